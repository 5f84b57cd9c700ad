// Package store keeps pilot's state in etcd: apps and their package archives,
// runtimes, clusters, networks and jobs, each a protobuf message (stored as
// protojson so an operator can read it with etcdctl). Writes that race with
// other writers go through Update, a compare-and-swap loop on the key's mod
// revision, so several pilot replicas can share one etcd.
package store

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Key prefixes. Everything pilot owns lives under /hangar/.
const (
	AppsPrefix     = "/hangar/apps/"
	ArchivesPrefix = "/hangar/app-archives/"
	RuntimesPrefix = "/hangar/runtimes/"
	ClustersPrefix = "/hangar/clusters/"
	NetworksPrefix = "/hangar/networks/"
	JobsPrefix     = "/hangar/jobs/"
	ClaimsPrefix   = "/hangar/claims/"
	// ActiveJobsPrefix indexes the jobs not yet terminal, so the engine
	// looks at live work only, however long the job history grows.
	ActiveJobsPrefix = "/hangar/active-jobs/"
	// NodeResultsPrefix holds each node's command result per job and task,
	// apart from the job record: a task update then rewrites a record that
	// does not grow with the cluster, and a result is written once per
	// change of its own.
	NodeResultsPrefix = "/hangar/node-results/"
	// JobSpecsPrefix holds the cluster spec each job was planned with,
	// rendered once when the change was accepted (raw JSON, see
	// apppkg.ClusterSpec.Stored).
	JobSpecsPrefix = "/hangar/job-specs/"
	// BackupsPrefix holds each cluster's backups: <cluster>/<backup>.
	BackupsPrefix = "/hangar/backups/"
	// SSHKeysPrefix holds the key pair of each passphraseless role of a
	// cluster, sealed: <cluster>/<role>.
	SSHKeysPrefix = "/hangar/ssh-keys/"
	// ImagesPrefix holds the image map:
	// <tenant>/<app>/<version>/<runtime>/<role> → ImageMapping.
	ImagesPrefix = "/hangar/images/"
)

// ErrNotFound is returned when a key does not exist.
var ErrNotFound = errors.New("not found")

// ErrExists is returned by Create when the key exists.
var ErrExists = errors.New("already exists")

// Store wraps an etcd client.
type Store struct {
	c *clientv3.Client
}

// New returns a Store over c; the caller keeps ownership of c.
func New(c *clientv3.Client) *Store { return &Store{c: c} }

// Client exposes the etcd client for watches and leases.
func (s *Store) Client() *clientv3.Client { return s.c }

// Key helpers. Apps and runtimes are named by their tenant's users, so two
// tenants may use the same name: their keys (and the networks of their
// runtimes) start with the tenant. Clusters and jobs have random global ids
// and carry their tenant in the record.
func AppKey(tenant, name, version string) string {
	return AppsPrefix + tenant + "/" + name + "/" + version
}
func ArchiveKey(tenant, name, version string) string {
	return ArchivesPrefix + tenant + "/" + name + "/" + version
}
func RuntimeKey(tenant, id string) string { return RuntimesPrefix + tenant + "/" + id }

// ImageKey is the image map's entry for role of app version on runtime (a
// role-less app's role is "", and its key ends in "/").
func ImageKey(tenant, app, version, runtime, role string) string {
	return ImagesPrefix + tenant + "/" + app + "/" + version + "/" + runtime + "/" + role
}

// TenantImagesPrefix holds a tenant's image map (of one app, when app is
// not empty).
func TenantImagesPrefix(tenant, app string) string {
	if app == "" {
		return ImagesPrefix + tenant + "/"
	}
	return ImagesPrefix + tenant + "/" + app + "/"
}
func ClusterKey(id string) string { return ClustersPrefix + id }
func NetworkKey(tenant, runtime, id string) string {
	return NetworksPrefix + tenant + "/" + runtime + "/" + id
}
func JobKey(id string) string       { return JobsPrefix + id }
func ActiveJobKey(id string) string { return ActiveJobsPrefix + id }
func JobSpecKey(id string) string   { return JobSpecsPrefix + id }

// BackupKey is where a backup of a cluster is kept.
func BackupKey(clusterID, id string) string { return BackupsPrefix + clusterID + "/" + id }

// SSHKeyKey is the sealed key pair of a passphraseless role of a cluster.
func SSHKeyKey(clusterID, role string) string { return SSHKeysPrefix + clusterID + "/" + role }

// JobPriorSpecKey keeps the spec a cluster had before a job that changes
// its app version (upgrade, rollback): the commands that stop the version
// being left are that version's.
func JobPriorSpecKey(id string) string { return JobSpecsPrefix + id + ".prior" }

// JobNodeResultsPrefix holds every node result of a job, by task then node.
func JobNodeResultsPrefix(jobID string) string { return NodeResultsPrefix + jobID + "/" }

// NodeResultKey is where a node's result in a task is kept.
func NodeResultKey(jobID, taskID, nodeID string) string {
	return JobNodeResultsPrefix(jobID) + taskID + "/" + nodeID
}

// TenantAppsPrefix holds every version of every app of a tenant; add
// name + "/" for one app's versions.
func TenantAppsPrefix(tenant string) string { return AppsPrefix + tenant + "/" }

// TenantRuntimesPrefix holds a tenant's runtimes.
func TenantRuntimesPrefix(tenant string) string { return RuntimesPrefix + tenant + "/" }

var marshal = protojson.MarshalOptions{UseProtoNames: true}
var unmarshal = protojson.UnmarshalOptions{DiscardUnknown: true}

// Get reads key into m, returning its mod revision.
func (s *Store) Get(ctx context.Context, key string, m proto.Message) (int64, error) {
	resp, err := s.c.Get(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return 0, fmt.Errorf("%s: %w", path.Base(key), ErrNotFound)
	}
	if err := unmarshal.Unmarshal(resp.Kvs[0].Value, m); err != nil {
		return 0, fmt.Errorf("decode %s: %w", key, err)
	}
	return resp.Kvs[0].ModRevision, nil
}

// Put writes m at key unconditionally.
func (s *Store) Put(ctx context.Context, key string, m proto.Message) error {
	b, err := marshal.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	if _, err := s.c.Put(ctx, key, string(b)); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// Create writes m at key only if the key does not exist.
func (s *Store) Create(ctx context.Context, key string, m proto.Message) error {
	b, err := marshal.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	resp, err := s.c.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(b))).Commit()
	if err != nil {
		return fmt.Errorf("create %s: %w", key, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%s: %w", path.Base(key), ErrExists)
	}
	return nil
}

// CreateAll writes every key/message pair in one transaction, only if none
// of the keys exists: the API uses it so a request creates all its records
// or none.
func (s *Store) CreateAll(ctx context.Context, kvs map[string]proto.Message, raw map[string][]byte) error {
	var cmps []clientv3.Cmp
	var ops []clientv3.Op
	for k, m := range kvs {
		b, err := marshal.Marshal(m)
		if err != nil {
			return fmt.Errorf("encode %s: %w", k, err)
		}
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), "=", 0))
		ops = append(ops, clientv3.OpPut(k, string(b)))
	}
	for k, b := range raw {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), "=", 0))
		ops = append(ops, clientv3.OpPut(k, string(b)))
	}
	resp, err := s.c.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return fmt.Errorf("create records: %w", err)
	}
	if !resp.Succeeded {
		return ErrExists
	}
	return nil
}

// Update applies fn to the message at key and writes it back if nobody
// changed it in between, retrying on conflicts. fn may return ErrNoChange to
// skip the write.
func Update[M proto.Message](ctx context.Context, s *Store, key string, newM func() M, fn func(M) error) (M, error) {
	for {
		m := newM()
		rev, err := s.Get(ctx, key, m)
		if err != nil {
			return m, err
		}
		if err := fn(m); err != nil {
			if errors.Is(err, ErrNoChange) {
				return m, nil
			}
			return m, err
		}
		b, err := marshal.Marshal(m)
		if err != nil {
			return m, fmt.Errorf("encode %s: %w", key, err)
		}
		resp, err := s.c.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
			Then(clientv3.OpPut(key, string(b))).Commit()
		if err != nil {
			return m, fmt.Errorf("update %s: %w", key, err)
		}
		if resp.Succeeded {
			return m, nil
		}
	}
}

// ErrNoChange tells Update there is nothing to write.
var ErrNoChange = errors.New("no change")

// List decodes every message under prefix.
func List[M proto.Message](ctx context.Context, s *Store, prefix string, newM func() M) ([]M, error) {
	resp, err := s.c.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	out := make([]M, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		m := newM()
		if err := unmarshal.Unmarshal(kv.Value, m); err != nil {
			return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// Page is one page of the keys under a prefix.
type Page struct {
	Keys   []string
	Values [][]byte
	// More is true when keys after the last one remain.
	More bool
}

// ListPage reads at most limit keys under prefix that sort after after
// ("": from the first), as of revision rev (0: now). Paging keeps what one
// read holds bounded however many keys the prefix has.
func (s *Store) ListPage(ctx context.Context, prefix, after string, limit int, rev int64) (Page, error) {
	start := prefix
	if after != "" {
		start = after + "\x00"
	}
	opts := []clientv3.OpOption{clientv3.WithRange(clientv3.GetPrefixRangeEnd(prefix)), clientv3.WithLimit(int64(limit)),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)}
	if rev > 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	resp, err := s.c.Get(ctx, start, opts...)
	if err != nil {
		return Page{}, fmt.Errorf("list %s: %w", prefix, err)
	}
	p := Page{More: resp.More}
	for _, kv := range resp.Kvs {
		p.Keys = append(p.Keys, string(kv.Key))
		p.Values = append(p.Values, kv.Value)
	}
	return p, nil
}

// Decode decodes a value read raw (ListPage, a watch event) into m.
func Decode(key string, b []byte, m proto.Message) error {
	if err := unmarshal.Unmarshal(b, m); err != nil {
		return fmt.Errorf("decode %s: %w", key, err)
	}
	return nil
}

// GetRaw reads a raw value.
func (s *Store) GetRaw(ctx context.Context, key string) ([]byte, error) {
	resp, err := s.c.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("%s: %w", key, ErrNotFound)
	}
	return resp.Kvs[0].Value, nil
}

// Delete removes key.
// DeletePrefix deletes every key under prefix (none is not an error).
func (s *Store) DeletePrefix(ctx context.Context, prefix string) error {
	if prefix == "" || !strings.HasSuffix(prefix, "/") {
		return fmt.Errorf("delete prefix %q: a prefix ends in '/'", prefix)
	}
	_, err := s.c.Delete(ctx, prefix, clientv3.WithPrefix())
	return err
}

func (s *Store) Delete(ctx context.Context, key string) error {
	if _, err := s.c.Delete(ctx, key); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// Move writes m at to and deletes from, in one transaction that succeeds
// only if from still has mod revision rev and to does not exist.
func (s *Store) Move(ctx context.Context, from string, rev int64, to string, m proto.Message) (bool, error) {
	b, err := marshal.Marshal(m)
	if err != nil {
		return false, fmt.Errorf("encode %s: %w", to, err)
	}
	resp, err := s.c.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(from), "=", rev), clientv3.Compare(clientv3.CreateRevision(to), "=", 0)).
		Then(clientv3.OpPut(to, string(b)), clientv3.OpDelete(from)).Commit()
	if err != nil {
		return false, fmt.Errorf("move %s to %s: %w", from, to, err)
	}
	return resp.Succeeded, nil
}

// Commit writes puts in one transaction that succeeds only if every key in
// guards still has the given mod revision (0: does not exist). It is how a
// cluster changes together with the job that carries the change out.
func (s *Store) Commit(ctx context.Context, guards map[string]int64, puts map[string]proto.Message) error {
	return s.CommitRaw(ctx, guards, puts, nil)
}

// CommitRaw is Commit that also writes raw values.
func (s *Store) CommitRaw(ctx context.Context, guards map[string]int64, puts map[string]proto.Message, raw map[string][]byte) error {
	var cmps []clientv3.Cmp
	for k, rev := range guards {
		if rev == 0 {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), "=", 0))
		} else {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", rev))
		}
	}
	var ops []clientv3.Op
	for k, m := range puts {
		b, err := marshal.Marshal(m)
		if err != nil {
			return fmt.Errorf("encode %s: %w", k, err)
		}
		ops = append(ops, clientv3.OpPut(k, string(b)))
	}
	for k, b := range raw {
		ops = append(ops, clientv3.OpPut(k, string(b)))
	}
	resp, err := s.c.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if !resp.Succeeded {
		return ErrConflict
	}
	return nil
}

// ErrConflict is returned by Commit when a guard failed.
var ErrConflict = errors.New("changed concurrently; try again")

// RuntimeCredentialsPrefix holds each runtime's credentials, sealed
// (secretbox), apart from the Runtime record the API returns.
const RuntimeCredentialsPrefix = "/hangar/runtime-credentials/"

// RuntimeCredentialsKey is where a runtime's sealed credentials are kept.
func RuntimeCredentialsKey(tenant, id string) string {
	return RuntimeCredentialsPrefix + tenant + "/" + id
}

// maxGuardedAttempts bounds DeleteGuarded's re-reads when the records it
// checks keep changing.
const maxGuardedAttempts = 5

// DeleteGuarded deletes keys in one transaction, after check accepted every
// record under prefix as read at one revision, and only if no record under
// prefix was written since: a record created or changed concurrently is
// either seen by check or makes the transaction fail, and then the records
// are read and checked again (up to maxGuardedAttempts, then ErrConflict).
// check gets the values by key and returns an error to refuse. When keys[0]
// does not exist the result is ErrNotFound.
func (s *Store) DeleteGuarded(ctx context.Context, keys []string, prefix string, check func(map[string][]byte) error) error {
	for range maxGuardedAttempts {
		resp, err := s.c.Get(ctx, prefix, clientv3.WithPrefix())
		if err != nil {
			return fmt.Errorf("list %s: %w", prefix, err)
		}
		vals := make(map[string][]byte, len(resp.Kvs))
		for _, kv := range resp.Kvs {
			vals[string(kv.Key)] = kv.Value
		}
		if err := check(vals); err != nil {
			return err
		}
		ops := make([]clientv3.Op, 0, len(keys))
		for _, k := range keys {
			ops = append(ops, clientv3.OpDelete(k))
		}
		txn, err := s.c.Txn(ctx).If(
			clientv3.Compare(clientv3.CreateRevision(keys[0]), ">", 0),
			// Every record under prefix is at most as new as what check saw.
			clientv3.Compare(clientv3.ModRevision(prefix), "<", resp.Header.Revision+1).WithPrefix(),
		).Then(ops...).Commit()
		if err != nil {
			return fmt.Errorf("delete %s: %w", keys[0], err)
		}
		if txn.Succeeded {
			return nil
		}
		got, err := s.c.Get(ctx, keys[0], clientv3.WithCountOnly())
		if err != nil {
			return fmt.Errorf("get %s: %w", keys[0], err)
		}
		if got.Count == 0 {
			return fmt.Errorf("%s: %w", path.Base(keys[0]), ErrNotFound)
		}
	}
	return ErrConflict
}

// GetRawRev returns the raw value of key and its mod revision.
func (s *Store) GetRawRev(ctx context.Context, key string) ([]byte, int64, error) {
	resp, err := s.c.Get(ctx, key)
	if err != nil {
		return nil, 0, fmt.Errorf("get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, fmt.Errorf("%s: %w", path.Base(key), ErrNotFound)
	}
	return resp.Kvs[0].Value, resp.Kvs[0].ModRevision, nil
}

// Revision returns key's mod revision, or ErrNotFound.
func (s *Store) Revision(ctx context.Context, key string) (int64, error) {
	resp, err := s.c.Get(ctx, key, clientv3.WithKeysOnly())
	if err != nil {
		return 0, fmt.Errorf("get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return 0, fmt.Errorf("%s: %w", path.Base(key), ErrNotFound)
	}
	return resp.Kvs[0].ModRevision, nil
}
