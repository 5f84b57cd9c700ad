package local

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/internal/atomicfile"
	"github.com/hangarhq/hangar/internal/hostpath"
)

// Ranges are 127.X.Y.0/24 with X in 10..255 and Y in 1..255: Linux routes all
// of 127/8 to lo, and staying clear of 127.0.0.0/24 (and 127.0-9.*) keeps
// away from addresses other software on the host is likely to use. A
// runtime with network_prefix below 24 takes 2^(24-prefix) consecutive
// ones, aligned (127.10.4.0/22 is 127.10.4-7): each of them is claimed,
// and must be free, as a /24 network's would.
const (
	firstX    = 10
	firstY    = 1
	rangesPer = 255 // values of Y per X
	numRanges = (256 - firstX) * rangesPer
	minPrefix = 20
)

func rangeBase(i int) string {
	return fmt.Sprintf("127.%d.%d", firstX+i/rangesPer, firstY+i%rangesPer)
}

// hostsOf is the number of instance addresses of a network of prefix
// length p: each /24 block's .1 to .254, less the first block's .1.
func hostsOf(p int) int { return (1<<(24-p))*254 - 1 }

// blocks returns the 127.X.Y of each /24 block of a network's CIDR (one
// for a /24).
func blocks(cidr string) ([]string, error) {
	_, ipn, err := net.ParseCIDR(cidr)
	if err != nil {
		return nil, err
	}
	ones, bits := ipn.Mask.Size()
	ip := ipn.IP.To4()
	if ip == nil || bits != 32 || ones < minPrefix || ones > 24 {
		return nil, fmt.Errorf("network %s: not a /%d to /24 range", cidr, minPrefix)
	}
	out := make([]string, 0, 1<<(24-ones))
	for y := range 1 << (24 - ones) {
		out = append(out, fmt.Sprintf("%d.%d.%d", ip[0], ip[1], int(ip[2])+y))
	}
	return out, nil
}

// candidates lists, lowest first, the ranges of prefix length p a network
// may take: their first /24 block's 127.X.Y and the CIDR.
func candidates(p int) []string {
	if p == 24 {
		out := make([]string, numRanges)
		for i := range numRanges {
			out[i] = rangeBase(i) + ".0/24"
		}
		return out
	}
	step := 1 << (24 - p)
	var out []string
	for x := firstX; x < 256; x++ {
		for y := step; y+step <= 256; y += step {
			out = append(out, fmt.Sprintf("127.%d.%d.0/%d", x, y, p))
		}
	}
	return out
}

// defaultRangesDir is where ranges are claimed host-wide. Claims keep two
// root_dirs on one host (two pilots, parallel test runs) from handing out
// the same addresses, which would collide on the agents' fixed ports. The
// directory is the provider's user's own (root's, or the per-user runtime
// directory), never one other users can write: a claim file there decides
// which addresses, and so which instance users, a runtime gets.
func defaultRangesDir(euid int, xdgRuntimeDir string) string {
	switch {
	case euid == 0:
		return "/run/hangar/local-ranges"
	case filepath.IsAbs(xdgRuntimeDir):
		return filepath.Join(xdgRuntimeDir, "hangar-local-ranges")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("hangar-local-ranges-%d", euid))
}

// CreateNetwork allocates a free 127.X.Y.0/24 range (or larger, with
// network_prefix).
func (p *Provider) CreateNetwork(ctx context.Context, req *providerv1.CreateNetworkRequest) (*providerv1.Network, error) {
	cfg, err := p.parseRuntime(req.GetRuntime())
	if err != nil {
		return nil, err
	}
	token := req.GetIdempotencyToken()
	if err := required("idempotency_token", token); err != nil {
		return nil, err
	}
	var out *network
	err = p.update(ctx, cfg, func(t *tx) error {
		for _, n := range t.st.Networks {
			if n.Token == token {
				out = n
				return nil
			}
		}
		if ts, ok := t.st.Deleted[networkTokenKey(token)]; ok {
			return status.Errorf(codes.FailedPrecondition,
				"idempotency_token %q created network %s, which has been deleted; use a new token", token, ts.ID)
		}
		id, err := newID("net-", func(id string) bool { _, ok := t.st.Networks[id]; return ok })
		if err != nil {
			return err
		}
		cidr, err := p.claimRange(ctx, cfg, t.st, id)
		if err != nil {
			return err
		}
		n := &network{ID: id, Name: req.GetName(), CIDR: cidr, Token: token, Created: time.Now().UTC()}
		t.st.Networks[id] = n
		if err := t.save(); err != nil {
			delete(t.st.Networks, id)
			p.releaseRange(ctx, cfg, n)
			return err
		}
		p.log.Info("network created", "network", id, "cidr", cidr, "root_dir", cfg.root)
		out = n
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out.proto(), nil
}

// GetNetwork returns a network, or NotFound.
func (p *Provider) GetNetwork(ctx context.Context, req *providerv1.GetNetworkRequest) (*providerv1.Network, error) {
	n, err := getRecord(ctx, p, req.GetRuntime(), "network", req.GetNetworkId(), func(st *state, id string) (*network, bool) {
		n, ok := st.Networks[id]
		return n, ok
	})
	if err != nil {
		return nil, err
	}
	return n.proto(), nil
}

// getRecord reads the record id of a kind ("network", "instance") under the
// state lock: InvalidArgument when id is empty, NotFound when it is not
// there. The record is read inside the transaction; its proto is made after.
func getRecord[T any](ctx context.Context, p *Provider, rt *providerv1.Runtime, kind, id string, find func(*state, string) (T, bool)) (T, error) {
	var out T
	cfg, err := p.parseRuntime(rt)
	if err != nil {
		return out, err
	}
	if err := required(kind+"_id", id); err != nil {
		return out, err
	}
	err = p.update(ctx, cfg, func(t *tx) error {
		rec, ok := find(t.st, id)
		if !ok {
			return status.Errorf(codes.NotFound, "%s %s not found", kind, id)
		}
		out = rec
		return nil
	})
	return out, err
}

// DeleteNetwork removes an empty network and frees its range. A missing
// network is not an error.
func (p *Provider) DeleteNetwork(ctx context.Context, req *providerv1.DeleteNetworkRequest) (*providerv1.DeleteNetworkResponse, error) {
	id := req.GetNetworkId()
	cfg, err := p.runtimeWith(req.GetRuntime(), "network_id", id)
	if err != nil {
		return nil, err
	}
	err = p.update(ctx, cfg, func(t *tx) error {
		n, ok := t.st.Networks[id]
		if !ok {
			return nil
		}
		var left []string
		for _, in := range t.st.Instances {
			if in.NetworkID == id {
				left = append(left, in.ID)
			}
		}
		if len(left) > 0 {
			sort.Strings(left)
			return status.Errorf(codes.FailedPrecondition,
				"network %s still has instances %s; delete them first", id, strings.Join(left, ", "))
		}
		delete(t.st.Networks, id)
		// Its reserved addresses go with it.
		for token, r := range t.st.Reserved {
			if r.Network == id {
				delete(t.st.Reserved, token)
			}
		}
		t.st.Deleted[networkTokenKey(n.Token)] = tombstone{ID: id, Deleted: time.Now().UTC()}
		if err := t.save(); err != nil {
			return err
		}
		// After the save: a range whose claim outlives its network is
		// reclaimed later (see claimRange); the reverse would be a clash.
		p.releaseRange(ctx, cfg, n)
		p.log.Info("network deleted", "network", id, "root_dir", cfg.root)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &providerv1.DeleteNetworkResponse{}, nil
}

func (n *network) proto() *providerv1.Network {
	return &providerv1.Network{Id: n.ID, Name: n.Name, Cidr: n.CIDR}
}

// claim is the content of a range's file in the ranges directory.
type claim struct {
	RootDir   string `json:"root_dir"`
	NetworkID string `json:"network_id"`
}

// claimRange finds the lowest range free both in st and host-wide, and
// claims it for network id. Called with the root's lock held.
func (p *Provider) claimRange(ctx context.Context, cfg runtimeConfig, st *state, id string) (string, error) {
	used := map[string]bool{} // /24 blocks of this root's networks
	for _, n := range st.Networks {
		bs, _ := blocks(n.CIDR)
		for _, b := range bs {
			used[b] = true
		}
	}
	unlock, err := lockRanges(ctx, cfg.rangesDir, p.euid)
	if err != nil {
		return "", err
	}
	defer unlock()
	// Claims are per user; a range another user's pilot (or anything
	// else) already serves on is skipped too.
	listening := listeningRanges()
	all := candidates(cfg.prefix)
next:
	for _, cidr := range all {
		bs, err := blocks(cidr)
		if err != nil {
			return "", internal("range %s: %v", cidr, err)
		}
		for _, b := range bs {
			if used[b] || listening[b] {
				continue next
			}
			free, err := claimFree(filepath.Join(cfg.rangesDir, b+".0"), cfg.root, st)
			if err != nil {
				return "", err
			}
			if !free {
				continue next
			}
		}
		data, _ := json.Marshal(claim{RootDir: cfg.root, NetworkID: id})
		for _, b := range bs {
			if err := atomicfile.Write(filepath.Join(cfg.rangesDir, b+".0"), data, 0o600); err != nil {
				return "", internal("claim range %s in runtime.config.%s %s: %v", cidr, keyRangesDir, cfg.rangesDir, err)
			}
		}
		return cidr, nil
	}
	return "", status.Errorf(codes.ResourceExhausted, "no free 127.X.Y.0/%d range left on this host (%d in all)", cfg.prefix, len(all))
}

// claimFree reports whether the range claimed by the file at path may be
// taken: nobody claims it, or its claim is stale (this root's own leftover,
// or a root_dir that no longer exists, e.g. a removed test directory).
func claimFree(path, root string, st *state) (bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, internal("read range claim %s: %v", path, err)
	}
	var c claim
	if err := json.Unmarshal(b, &c); err != nil || c.RootDir == "" {
		// Unreadable claims are left alone: better a skipped range than
		// a clash.
		return false, nil
	}
	if c.RootDir == root {
		_, live := st.Networks[c.NetworkID]
		return !live, nil
	}
	if _, err := os.Stat(c.RootDir); errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	return false, nil
}

// releaseRange drops n's host-wide claim if it is still n's. Failures are
// only logged: a leftover claim of this root is reclaimed by claimFree.
func (p *Provider) releaseRange(ctx context.Context, cfg runtimeConfig, n *network) {
	unlock, err := lockRanges(ctx, cfg.rangesDir, p.euid)
	if err != nil {
		p.log.Warn("release range claim", "network", n.ID, "cidr", n.CIDR, "error", err)
		return
	}
	defer unlock()
	bs, err := blocks(n.CIDR)
	if err != nil {
		p.log.Warn("release range claim", "network", n.ID, "cidr", n.CIDR, "error", err)
		return
	}
	for _, blk := range bs {
		path := filepath.Join(cfg.rangesDir, blk+".0")
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var c claim
		if json.Unmarshal(b, &c) == nil && c.RootDir == cfg.root && c.NetworkID == n.ID {
			if err := os.Remove(path); err != nil {
				p.log.Warn("release range claim", "network", n.ID, "cidr", n.CIDR, "error", err)
			}
		}
	}
}

// lockRanges creates the ranges directory if needed (mode 0700), checks
// that only this process's user can write to it, and locks it.
func lockRanges(ctx context.Context, dir string, euid int) (func(), error) {
	if err := hostpath.Private(dir, euid, "runtime.config."+keyRangesDir); err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	return lockFile(ctx, filepath.Join(dir, ".lock"))
}

// listeningRanges returns the 127.X.Y of every address some TCP socket
// listens on, from /proc/net/tcp (this network namespace's).
func listeningRanges() map[string]bool {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return nil
	}
	return parseListening(b)
}

// parseListening reads /proc/net/tcp: each line's local address is the
// IPv4 address as a hexadecimal number in host byte order, a colon and the
// port; state 0A is LISTEN.
func parseListening(b []byte) map[string]bool {
	out := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || f[3] != "0A" {
			continue
		}
		hexIP, _, ok := strings.Cut(f[1], ":")
		n, err := strconv.ParseUint(hexIP, 16, 32)
		if !ok || err != nil {
			continue
		}
		var ip [4]byte
		binary.NativeEndian.PutUint32(ip[:], uint32(n))
		if ip[0] == 127 {
			out[fmt.Sprintf("127.%d.%d", ip[1], ip[2])] = true
		}
	}
	return out
}
