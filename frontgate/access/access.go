// Package access decides who may read what in the frontgate's etcd. The
// etcd runs with client-certificate authentication and auth enabled: the
// frontgate itself (CN frontgate:<id>) holds the root role; every cluster
// gets a role cluster:<id> that may only read /clusters/<id>/; and the
// drones allowed to read a cluster (its own nodes and those of clusters
// linking to it) are users drone:<node>, named by their certificates' CN,
// granted that role and nothing else, so no drone writes anything and none
// reads another cluster. The package also keeps the revoked node ids, under
// a prefix no drone can read.
//
// Until auth is enabled, etcd gives every client it admits full access, and
// its client-certificate check admits any certificate of pilot's CA. So the
// frontgate starts its etcd in two steps when the stored data does not show
// auth enabled (a first start, or one that crashed before auth was on):
// etcd first runs admitting only the frontgate's own certificate, Bootstrap
// runs there, that etcd stops; then etcd starts as configured, admitting
// every certificate of the CA, and CheckEnabled confirms auth is on (a
// start that finds it off stops). Later starts find auth enabled in the
// stored data and go straight to the second step.
package access

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strings"
	"sync"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hangarhq/hangar/frontgate/metastore"
)

// Prefixes of the frontgate's own bookkeeping: outside /clusters/, so no
// drone role covers them.
const (
	RevokedPrefix = "/frontgate/revoked/"
	ReadersPrefix = "/frontgate/readers/"
)

// ClusterPrefix is the etcd prefix of a cluster's metadata tree.
func ClusterPrefix(clusterID string) string { return "/clusters/" + clusterID + "/" }

// RoleName is the etcd role that reads a cluster's tree.
func RoleName(clusterID string) string { return "cluster:" + clusterID }

// DroneUser is the etcd user of a node: its certificate's CN.
func DroneUser(nodeID string) string { return "drone:" + nodeID }

// ErrInvalid marks an id that may not name a node or a cluster.
var ErrInvalid = errors.New("invalid access request")

// Same alphabet as the identities in certificates (internal/pki).
var nodeIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Etcd is the part of *clientv3.Client the Manager uses.
type Etcd interface {
	clientv3.KV
	clientv3.Auth
}

// Manager changes users, roles and revocations in one etcd. Its changes
// are serialised: two clusters sharing a reader must not race to delete
// a user the other is granting a role to.
type Manager struct {
	etcd Etcd
	log  *slog.Logger

	mu sync.Mutex
}

// New returns a Manager over etcd.
func New(etcd Etcd, log *slog.Logger) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{etcd: etcd, log: log}
}

// Bootstrap enables etcd auth with owner (the frontgate's certificate CN,
// "frontgate:<id>") as a root user, so the frontgate keeps full access
// through its certificate. etcd wants a user named root before it enables
// auth: it gets a random password that is never stored or used. Bootstrap
// is a no-op once auth is enabled. Run it only on an etcd that admits
// owner's certificate alone: until auth is on, any client etcd admits may
// read and write everything.
func (m *Manager) Bootstrap(ctx context.Context, owner string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, err := m.etcd.AuthStatus(ctx)
	if err != nil {
		return fmt.Errorf("etcd auth status: %w", err)
	}
	if st.Enabled {
		return nil
	}
	var pw [32]byte
	if _, err := rand.Read(pw[:]); err != nil {
		return fmt.Errorf("etcd root password: %w", err)
	}
	if _, err := m.etcd.UserAdd(ctx, "root", hex.EncodeToString(pw[:])); err != nil && !errors.Is(err, rpctypes.ErrUserAlreadyExist) {
		return fmt.Errorf("add etcd user root: %w", err)
	}
	if _, err := m.etcd.UserAddWithOptions(ctx, owner, "", &clientv3.UserAddOptions{NoPassword: true}); err != nil && !errors.Is(err, rpctypes.ErrUserAlreadyExist) {
		return fmt.Errorf("add etcd user %s: %w", owner, err)
	}
	for _, u := range []string{"root", owner} {
		if _, err := m.etcd.UserGrantRole(ctx, u, "root"); err != nil {
			return fmt.Errorf("grant etcd role root to %s: %w", u, err)
		}
	}
	if _, err := m.etcd.AuthEnable(ctx); err != nil {
		return fmt.Errorf("enable etcd auth: %w", err)
	}
	m.log.Info("etcd auth enabled", "owner", owner)
	return nil
}

// CheckEnabled returns an error unless etcd auth is enabled. The frontgate
// calls it instead of Bootstrap once its etcd admits every certificate of
// pilot's CA: enabling auth there would leave that etcd open to all of them
// until it is on, so a start that finds it off stops.
func (m *Manager) CheckEnabled(ctx context.Context) error {
	st, err := m.etcd.AuthStatus(ctx)
	if err != nil {
		return fmt.Errorf("etcd auth status: %w", err)
	}
	if !st.Enabled {
		return errors.New("etcd auth is not enabled: the frontgate only enables it while its etcd admits the frontgate alone")
	}
	return nil
}

// ValidateNodeID checks that id may name a node.
func ValidateNodeID(id string) error {
	if !nodeIDPattern.MatchString(id) {
		return fmt.Errorf("%w: node id %q: 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit", ErrInvalid, id)
	}
	return nil
}

// ValidateClusterID checks that id may name a cluster (the same rule as
// the metadata store's).
func ValidateClusterID(id string) error {
	if p := metastore.ClusterIDProblem(id); p != "" {
		return fmt.Errorf("%w: %s", ErrInvalid, p)
	}
	return nil
}

// SetReaders makes nodeIDs the drones that may read clusterID's tree: the
// cluster's role exists with read permission on its prefix, every listed
// node's user exists with that role, and the nodes listed last time but
// not now lose it (and their user, when it has no role left). Revoked
// nodes are never given a user. Repeating a call changes nothing.
func (m *Manager) SetReaders(ctx context.Context, clusterID string, nodeIDs []string) error {
	if err := ValidateClusterID(clusterID); err != nil {
		return err
	}
	want := map[string]bool{}
	for _, n := range nodeIDs {
		if err := ValidateNodeID(n); err != nil {
			return fmt.Errorf("cluster %s: reader_node_ids: %w", clusterID, err)
		}
		want[n] = true
	}
	m.mu.Lock()
	defer m.mu.Unlock()

	if err := m.ensureRole(ctx, clusterID); err != nil {
		return err
	}
	had, err := m.readers(ctx, clusterID)
	if err != nil {
		return err
	}
	role := RoleName(clusterID)
	for _, n := range sorted(want) {
		if had[n] {
			// Granted when it was recorded; the record is written only
			// after every grant succeeded.
			continue
		}
		revoked, err := m.isRevoked(ctx, n)
		if err != nil {
			return err
		}
		if revoked {
			m.log.Warn("revoked node listed as a reader; not granted", "cluster_id", clusterID, "node_id", n)
			continue
		}
		if err := m.grant(ctx, n, role); err != nil {
			return err
		}
	}
	for _, n := range sorted(had) {
		if want[n] {
			continue
		}
		if err := m.revokeRole(ctx, n, role); err != nil {
			return err
		}
	}
	if err := m.saveReaders(ctx, clusterID, sorted(want)); err != nil {
		return err
	}
	m.log.Debug("cluster readers set", "cluster_id", clusterID, "readers", len(want))
	return nil
}

// DeleteCluster removes clusterID's role (etcd takes it from every user)
// and the users of its readers that are left with no role. Deleting an
// absent cluster is not an error.
func (m *Manager) DeleteCluster(ctx context.Context, clusterID string) error {
	if err := ValidateClusterID(clusterID); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	had, err := m.readers(ctx, clusterID)
	if err != nil {
		return err
	}
	if _, err := m.etcd.RoleDelete(ctx, RoleName(clusterID)); err != nil && !errors.Is(err, rpctypes.ErrRoleNotFound) {
		return fmt.Errorf("delete etcd role %s: %w", RoleName(clusterID), err)
	}
	for _, n := range sorted(had) {
		if err := m.deleteIfRoleless(ctx, n); err != nil {
			return err
		}
	}
	if _, err := m.etcd.Delete(ctx, ReadersPrefix+clusterID); err != nil {
		return fmt.Errorf("forget readers of cluster %s: %w", clusterID, err)
	}
	m.log.Debug("cluster access removed", "cluster_id", clusterID)
	return nil
}

// Revoke records nodeID as revoked, so it never gets a user again, and
// deletes its user: its certificate no longer reads anything here.
func (m *Manager) Revoke(ctx context.Context, nodeID, clusterID string) error {
	if err := ValidateNodeID(nodeID); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.etcd.Put(ctx, RevokedPrefix+nodeID, clusterID); err != nil {
		return fmt.Errorf("record revocation of node %s: %w", nodeID, err)
	}
	if _, err := m.etcd.UserDelete(ctx, DroneUser(nodeID)); err != nil && !errors.Is(err, rpctypes.ErrUserNotFound) {
		return fmt.Errorf("delete etcd user %s: %w", DroneUser(nodeID), err)
	}
	m.log.Warn("node revoked", "node_id", nodeID, "cluster_id", clusterID)
	return nil
}

// RevokedNodes lists the revoked node ids, for the relay to refuse after a
// restart.
func (m *Manager) RevokedNodes(ctx context.Context) ([]string, error) {
	resp, err := m.etcd.Get(ctx, RevokedPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("read revoked nodes: %w", err)
	}
	out := make([]string, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out = append(out, strings.TrimPrefix(string(kv.Key), RevokedPrefix))
	}
	return out, nil
}

func (m *Manager) isRevoked(ctx context.Context, nodeID string) (bool, error) {
	resp, err := m.etcd.Get(ctx, RevokedPrefix+nodeID, clientv3.WithCountOnly())
	if err != nil {
		return false, fmt.Errorf("read revocation of node %s: %w", nodeID, err)
	}
	return resp.Count > 0, nil
}

// ensureRole creates the cluster's role with read permission on exactly
// its prefix, unless it already is so.
func (m *Manager) ensureRole(ctx context.Context, clusterID string) error {
	role, prefix := RoleName(clusterID), ClusterPrefix(clusterID)
	end := clientv3.GetPrefixRangeEnd(prefix)
	got, err := m.etcd.RoleGet(ctx, role)
	switch {
	case errors.Is(err, rpctypes.ErrRoleNotFound):
		if _, err := m.etcd.RoleAdd(ctx, role); err != nil && !errors.Is(err, rpctypes.ErrRoleAlreadyExist) {
			return fmt.Errorf("add etcd role %s: %w", role, err)
		}
	case err != nil:
		return fmt.Errorf("read etcd role %s: %w", role, err)
	default:
		for _, p := range got.Perm {
			if string(p.Key) == prefix && string(p.RangeEnd) == end && p.PermType == clientv3.PermRead {
				return nil
			}
		}
	}
	if _, err := m.etcd.RoleGrantPermission(ctx, role, prefix, end, clientv3.PermissionType(clientv3.PermRead)); err != nil {
		return fmt.Errorf("grant %s read on %s: %w", role, prefix, err)
	}
	return nil
}

func (m *Manager) grant(ctx context.Context, nodeID, role string) error {
	user := DroneUser(nodeID)
	// No password: a drone authenticates by its certificate only.
	if _, err := m.etcd.UserAddWithOptions(ctx, user, "", &clientv3.UserAddOptions{NoPassword: true}); err != nil && !errors.Is(err, rpctypes.ErrUserAlreadyExist) {
		return fmt.Errorf("add etcd user %s: %w", user, err)
	}
	if _, err := m.etcd.UserGrantRole(ctx, user, role); err != nil {
		return fmt.Errorf("grant etcd role %s to %s: %w", role, user, err)
	}
	return nil
}

func (m *Manager) revokeRole(ctx context.Context, nodeID, role string) error {
	user := DroneUser(nodeID)
	_, err := m.etcd.UserRevokeRole(ctx, user, role)
	if err != nil && !errors.Is(err, rpctypes.ErrUserNotFound) && !errors.Is(err, rpctypes.ErrRoleNotGranted) {
		return fmt.Errorf("revoke etcd role %s from %s: %w", role, user, err)
	}
	return m.deleteIfRoleless(ctx, nodeID)
}

// deleteIfRoleless deletes the node's user once no cluster is readable by
// it, so users do not pile up as nodes come and go.
func (m *Manager) deleteIfRoleless(ctx context.Context, nodeID string) error {
	user := DroneUser(nodeID)
	got, err := m.etcd.UserGet(ctx, user)
	if errors.Is(err, rpctypes.ErrUserNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read etcd user %s: %w", user, err)
	}
	if len(got.Roles) > 0 {
		return nil
	}
	if _, err := m.etcd.UserDelete(ctx, user); err != nil && !errors.Is(err, rpctypes.ErrUserNotFound) {
		return fmt.Errorf("delete etcd user %s: %w", user, err)
	}
	return nil
}

// readers returns the readers recorded for the cluster by the last
// successful SetReaders.
func (m *Manager) readers(ctx context.Context, clusterID string) (map[string]bool, error) {
	resp, err := m.etcd.Get(ctx, ReadersPrefix+clusterID)
	if err != nil {
		return nil, fmt.Errorf("read readers of cluster %s: %w", clusterID, err)
	}
	out := map[string]bool{}
	if len(resp.Kvs) == 0 {
		return out, nil
	}
	var ids []string
	if err := json.Unmarshal(resp.Kvs[0].Value, &ids); err != nil {
		// Only this package writes the record; a damaged one is rebuilt
		// by granting every listed reader again.
		m.log.Warn("damaged readers record; rebuilding", "cluster_id", clusterID, "err", err)
		return out, nil
	}
	for _, id := range ids {
		out[id] = true
	}
	return out, nil
}

func (m *Manager) saveReaders(ctx context.Context, clusterID string, ids []string) error {
	b, err := json.Marshal(ids)
	if err != nil {
		return fmt.Errorf("encode readers of cluster %s: %w", clusterID, err)
	}
	if _, err := m.etcd.Put(ctx, ReadersPrefix+clusterID, string(b)); err != nil {
		return fmt.Errorf("record readers of cluster %s: %w", clusterID, err)
	}
	return nil
}

func sorted(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
