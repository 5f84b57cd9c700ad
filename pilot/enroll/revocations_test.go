package enroll

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/hangarhq/hangar/internal/etcdserver/etcdtest"
	"github.com/hangarhq/hangar/internal/pki"
)

func TestRevocationReachesOtherReplicasThroughTheWatch(t *testing.T) {
	c := etcdtest.Client(t)
	ctx := context.Background()
	a, err := NewRevocations(ctx, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := NewRevocations(ctx, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	fg := pki.Identity{Kind: pki.KindFrontgate, ID: "fg-1"}
	node := pki.Identity{Kind: pki.KindDrone, ID: "cln-1", Cluster: "cl-a"}
	if a.IsRevoked(fg) || b.IsRevoked(node) {
		t.Fatal("revoked before Revoke")
	}
	if err := a.Revoke(ctx, pki.KindFrontgate, "fg-1", "compromised", "admin"); err != nil {
		t.Fatal(err)
	}
	if !a.IsRevoked(fg) {
		t.Fatal("Revoke is not effective at once on the replica that made it")
	}
	eventually(t, "the frontgate revocation on the other replica", func() bool { return b.IsRevoked(fg) })

	if err := a.Revoke(ctx, pki.KindDrone, "cln-1", "", "admin"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the drone revocation on the other replica", func() bool { return b.IsRevoked(node) })
	// A node is revoked whatever cluster its certificate names, and kinds
	// do not mix.
	for _, tc := range []struct {
		id   pki.Identity
		want bool
	}{
		{pki.Identity{Kind: pki.KindDrone, ID: "cln-1", Cluster: "other"}, true},
		{pki.Identity{Kind: pki.KindFrontgate, ID: "cln-1"}, false},
		{pki.Identity{Kind: pki.KindDrone, ID: "fg-1", Cluster: "c"}, false},
		{pki.Identity{Kind: pki.KindPilot, ID: "fg-1"}, false},
		{pki.Identity{Kind: pki.KindDrone, ID: "cln-2", Cluster: "cl-a"}, false},
	} {
		if got := b.IsRevoked(tc.id); got != tc.want {
			t.Errorf("IsRevoked(%s) = %v, want %v", tc.id, got, tc.want)
		}
	}

	// Deleting the record (an operator undoing a mistake with etcdctl)
	// reaches the watchers too.
	if _, err := c.Delete(ctx, RevocationKey(pki.KindFrontgate, "fg-1")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deleted revocation to vanish", func() bool { return !a.IsRevoked(fg) && !b.IsRevoked(fg) })

	// A new instance (pilot restarted) loads what is stored.
	d, err := NewRevocations(ctx, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if !d.IsRevoked(node) || d.IsRevoked(fg) {
		t.Fatal("a new Revocations does not start from etcd's state")
	}
}

func TestRevokeRecordsAndLists(t *testing.T) {
	c := etcdtest.Client(t)
	ctx := context.Background()
	r, err := NewRevocations(ctx, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	before := time.Now().Add(-time.Second)
	if err := r.Revoke(ctx, pki.KindDrone, "cln-1", "disk stolen", "alice"); err != nil {
		t.Fatal(err)
	}
	if err := r.Revoke(ctx, pki.KindFrontgate, "fg-1", "compromised", "bob"); err != nil {
		t.Fatal(err)
	}
	// Revoking again is fine and keeps the first record.
	if err := r.Revoke(ctx, pki.KindDrone, "cln-1", "again", "carol"); err != nil {
		t.Fatal(err)
	}
	list, err := r.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 {
		t.Fatalf("%d revocations, want 2: %v", len(list), list)
	}
	first, second := list[0], list[1]
	if first.Kind != "drone" || first.Id != "cln-1" || first.Reason != "disk stolen" || first.By != "alice" {
		t.Fatalf("first revocation %v, want drone cln-1 by alice", first)
	}
	if second.Kind != "frontgate" || second.Id != "fg-1" || second.By != "bob" {
		t.Fatalf("second revocation %v, want frontgate fg-1 by bob", second)
	}
	if ts := first.Time.AsTime(); ts.Before(before) || ts.After(time.Now()) || second.Time.AsTime().Before(ts) {
		t.Fatalf("times %v, %v: want now, oldest first", ts, second.Time.AsTime())
	}
}

func TestRevokeValidatesItsInput(t *testing.T) {
	c := etcdtest.Client(t)
	ctx := context.Background()
	r, err := NewRevocations(ctx, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, tc := range []struct {
		name   string
		kind   pki.Kind
		id     string
		reason string
		want   string
	}{
		{"pilot", pki.KindPilot, "pilot", "", `kind "pilot": want frontgate or drone`},
		{"unknown kind", "user", "x", "", "want frontgate or drone"},
		{"empty id", pki.KindDrone, "", "", "id: required"},
		{"id with a slash", pki.KindDrone, "a/b", "", `id "a/b": 1 to 128 letters, digits, '.', '_' and '-'`},
		{"id too long", pki.KindFrontgate, strings.Repeat("f", 129), "", "1 to 128 letters"},
		{"id with invalid UTF-8", pki.KindFrontgate, "fg-\xff", "", `id "fg-\xff"`},
		{"long reason", pki.KindDrone, "n", strings.Repeat("x", maxReasonBytes+1), "reason: 1025 bytes, at most 1024"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := r.Revoke(ctx, tc.kind, tc.id, tc.reason, "admin")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one containing %q", err, tc.want)
			}
			// The caller's mistake, not pilot's trouble: never "retry later".
			if st := Status(err); st.Code() != codes.InvalidArgument || st.Message() != err.Error() {
				t.Fatalf("Status(%v) = %v, want InvalidArgument with the same message", err, st)
			}
		})
	}
	if list, err := r.List(ctx); err != nil || len(list) != 0 {
		t.Fatalf("after refused revokes: %v, %v; want none stored", list, err)
	}
}
