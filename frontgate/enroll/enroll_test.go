package enroll

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hangarhq/hangar/frontgate/internal/fakepilot"
	"github.com/hangarhq/hangar/internal/join"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/testca"
	"github.com/hangarhq/hangar/internal/tlsutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var fg1 = pki.Identity{Kind: pki.KindFrontgate, ID: "fg-1"}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func config(p *fakepilot.Pilot, dir, token string) Config {
	return Config{Dir: dir, FrontgateID: "fg-1", PilotAddress: p.Addr(), JoinToken: token, CAPEM: p.CA().CertPEM(), BackoffBase: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond}
}

func TestJoinThenLoad(t *testing.T) {
	p := fakepilot.Start(t, "127.0.0.1:0", nil)
	p.AddToken("tok-1", fg1, testca.Loopback)
	dir := filepath.Join(t.TempDir(), "tls")

	res, err := Ensure(testCtx(t), config(p, dir, "tok-1"))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Joined || res.Creds.Identity() != fg1 {
		t.Fatalf("joined=%v identity=%s, want a join as %s", res.Joined, res.Creds.Identity(), fg1)
	}
	if ips := res.Creds.Leaf().IPAddresses; len(ips) != 1 || !ips[0].Equal(testca.Loopback) {
		t.Fatalf("certificate IPs %v, want the ones the token names", ips)
	}
	fi, err := os.Stat(filepath.Join(dir, tlsutil.KeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}

	// The next start loads: no token needed, none spent.
	res2, err := Ensure(testCtx(t), config(p, dir, ""))
	if err != nil {
		t.Fatal(err)
	}
	if res2.Joined || res2.Creds.Leaf().SerialNumber.Cmp(res.Creds.Leaf().SerialNumber) != 0 {
		t.Fatal("second start did not load the saved certificate")
	}
	if p.Joins() != 1 {
		t.Fatalf("pilot saw %d joins, want 1", p.Joins())
	}
}

func TestRefusedJoinSaysRecreate(t *testing.T) {
	p := fakepilot.Start(t, "127.0.0.1:0", nil)
	p.AddToken("tok-1", fg1, testca.Loopback)
	if _, err := Ensure(testCtx(t), config(p, t.TempDir(), "tok-1")); err != nil {
		t.Fatal(err)
	}
	// The same token again, for a fresh dir: used.
	dir := t.TempDir()
	_, err := Ensure(testCtx(t), config(p, dir, "tok-1"))
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "pilot must recreate this frontgate") || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("Ensure with a used token = %v, want ErrRefused saying to recreate", err)
	}
	if tlsutil.Exists(dir) {
		t.Fatal("a refused join left a certificate behind")
	}
}

func TestJoinWaitsForPilot(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ca := testca.New(t)
	cfg := Config{Dir: t.TempDir(), FrontgateID: "fg-1", PilotAddress: addr, JoinToken: "tok", CAPEM: ca.CertPEM(), BackoffBase: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond}
	type result struct {
		res *Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := Ensure(testCtx(t), cfg)
		done <- result{res, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("Ensure returned before pilot was up: %v", r.err)
	case <-time.After(200 * time.Millisecond):
	}
	p := fakepilot.Start(t, addr, ca)
	p.AddToken("tok", fg1, testca.Loopback)
	r := <-done
	if r.err != nil || r.res.Creds.Identity() != fg1 {
		t.Fatalf("Ensure after pilot came up = %v", r.err)
	}
}

func TestCertificateForAnotherIdentityIsRefused(t *testing.T) {
	p := fakepilot.Start(t, "127.0.0.1:0", nil)
	// A token naming another frontgate: whatever pilot says, this
	// frontgate does not take another's identity.
	p.AddToken("tok", pki.Identity{Kind: pki.KindFrontgate, ID: "fg-2"}, testca.Loopback)
	dir := t.TempDir()
	_, err := Ensure(testCtx(t), config(p, dir, "tok"))
	if err == nil || !strings.Contains(err.Error(), "it is for hangar://frontgate/fg-2, not this frontgate") {
		t.Fatalf("Ensure = %v, want the foreign identity named", err)
	}
	if tlsutil.Exists(dir) {
		t.Fatal("a foreign certificate was saved")
	}
}

func TestLoadChecks(t *testing.T) {
	ca := testca.New(t)
	other := testca.Creds(t, ca, pki.Identity{Kind: pki.KindFrontgate, ID: "fg-2"}, time.Hour)
	expired := testca.Creds(t, ca, fg1, -time.Hour)
	tests := []struct {
		name string
		dir  string
		want string
	}{
		{"other frontgate", other.Dir(), "is for hangar://frontgate/fg-2, but the user data names hangar://frontgate/fg-1"},
		{"expired", expired.Dir(), "can no longer be renewed; pilot must recreate this frontgate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Ensure(testCtx(t), Config{Dir: tt.dir, FrontgateID: "fg-1", PilotAddress: "127.0.0.1:1"})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Ensure = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestBadConfig(t *testing.T) {
	ca := testca.New(t)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no dir", Config{FrontgateID: "fg-1", PilotAddress: "p:1"}, "Dir is required"},
		{"no token", Config{Dir: t.TempDir(), FrontgateID: "fg-1", PilotAddress: "p:1", CAPEM: ca.CertPEM()}, "user data join_token is required"},
		{"no CA", Config{Dir: t.TempDir(), FrontgateID: "fg-1", PilotAddress: "p:1", JoinToken: "t"}, "user data ca_pem is required"},
		{"bad address", Config{Dir: t.TempDir(), FrontgateID: "fg-1", PilotAddress: "pilot", JoinToken: "t", CAPEM: ca.CertPEM()}, `pilot address "pilot": want host:port`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Ensure(testCtx(t), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Ensure = %v, want %q", err, tt.want)
			}
		})
	}
}

// A join whose answer is lost after pilot marked the token used completes
// with the same key: on the next attempt, or on the next start when the
// frontgate stopped before it. Another key still finds the token used.
func TestLostJoinAnswerCompletesWithTheSameKey(t *testing.T) {
	for _, tc := range []struct {
		name    string
		restart bool
	}{
		{"retried in the same start", false},
		{"retried by the next start", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := fakepilot.Start(t, "127.0.0.1:0", nil)
			p.AddToken("tok-1", fg1, testca.Loopback)
			p.LoseJoinAnswers(1)
			dir := filepath.Join(t.TempDir(), "tls")
			pending := filepath.Join(dir, join.PendingKeyFile)

			var pendingPEM []byte
			if tc.restart {
				pendingPEM = stopAfterLostAnswer(t, p, config(p, dir, "tok-1"))
			}
			res, err := Ensure(testCtx(t), config(p, dir, "tok-1"))
			if err != nil {
				t.Fatal(err)
			}
			if !res.Joined || res.Creds.Identity() != fg1 {
				t.Fatalf("joined=%v identity=%s, want a join as %s", res.Joined, res.Creds.Identity(), fg1)
			}
			keys := p.JoinKeys()
			leafKey := sha256.Sum256(res.Creds.Leaf().RawSubjectPublicKeyInfo)
			if len(keys) != 2 || keys[0] != leafKey || keys[1] != leafKey {
				t.Fatalf("pilot granted %d joins; want 2 (the lost one, then the retry), both for the saved key", len(keys))
			}
			if tc.restart {
				saved, err := os.ReadFile(filepath.Join(dir, tlsutil.KeyFile))
				if err != nil || !bytes.Equal(saved, pendingPEM) {
					t.Fatalf("saved key: %v; want the pending key of the first start", err)
				}
			}
			if _, err := os.Stat(pending); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("pending key after the certificate was saved: %v; want it removed", err)
			}

			// The token is bound to that key: a new one (a fresh dir) is
			// refused.
			_, err = Ensure(testCtx(t), config(p, t.TempDir(), "tok-1"))
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "already used") {
				t.Fatalf("join with another key = %v, want ErrRefused, already used", err)
			}
		})
	}
}

// stopAfterLostAnswer runs a first start whose join is granted but whose
// answer is lost, and stops it before it retries (the next retry is an
// hour away), as a crash would. It returns the pending key left behind.
func stopAfterLostAnswer(t *testing.T, p *fakepilot.Pilot, cfg Config) []byte {
	t.Helper()
	cfg.BackoffBase, cfg.BackoffMax = time.Hour, time.Hour
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := Ensure(ctx, cfg)
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for p.Joins() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the first start never reached pilot")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("first start = %v, want it stopped while waiting to retry", err)
	}
	if tlsutil.Exists(cfg.Dir) {
		t.Fatal("the first start saved a certificate it never received")
	}
	keyPEM, err := os.ReadFile(filepath.Join(cfg.Dir, join.PendingKeyFile))
	if err != nil {
		t.Fatalf("the first start left no pending key: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(cfg.Dir, join.PendingKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("pending key: %v, want mode 0600", err)
	}
	return keyPEM
}
