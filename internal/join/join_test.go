package join

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/jointoken"
	"github.com/hangarhq/hangar/internal/pki"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var opts = Options{BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond, CallTimeout: time.Second, Where: "pilot x", RefusedHint: "recreate it"}

func TestRetryUntilAnswered(t *testing.T) {
	calls := 0
	cert, err := Retry(context.Background(), opts, func(context.Context) (*streamv1.Certificate, error) {
		calls++
		if calls < 3 {
			return nil, status.Error(codes.Unavailable, "not up yet")
		}
		return &streamv1.Certificate{CertificatePem: "ok"}, nil
	})
	if err != nil || cert.CertificatePem != "ok" || calls != 3 {
		t.Fatalf("cert %v err %v after %d calls; want ok after 3", cert, err, calls)
	}
}

func TestRefusalIsFinal(t *testing.T) {
	for _, code := range []codes.Code{codes.PermissionDenied, codes.Unauthenticated, codes.InvalidArgument} {
		calls := 0
		_, err := Retry(context.Background(), opts, func(context.Context) (*streamv1.Certificate, error) {
			calls++
			return nil, status.Error(code, "join token already used")
		})
		if !errors.Is(err, ErrRefused) || calls != 1 || !strings.Contains(err.Error(), "already used") || !strings.Contains(err.Error(), "recreate it") {
			t.Errorf("%v: err %v after %d calls; want one call, ErrRefused with the reason and the hint", code, err, calls)
		}
	}
}

func TestRetryStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err := Retry(ctx, opts, func(context.Context) (*streamv1.Certificate, error) {
		return nil, status.Error(codes.Unavailable, "down")
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the context's deadline", err)
	}
}

func TestPendingRequestKeepsTheKeyUntilForgotten(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	keyPEM, req, reused, err := PendingRequest(dir, "hjt_x")
	if err != nil {
		t.Fatal(err)
	}
	if reused || !jointoken.Proves("hjt_x", req) {
		t.Fatalf("first call: reused %v, request %v; want a new key and a proof of the token", reused, req)
	}
	if strings.Contains(req.String(), "hjt_x") {
		t.Fatalf("the join request carries the token itself: %v", req)
	}
	path := filepath.Join(dir, PendingKeyFile)
	onDisk, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(onDisk, keyPEM) {
		t.Fatalf("pending key file: %v; want the returned key saved before any call", err)
	}
	for p, mode := range map[string]os.FileMode{dir: 0o700, path: 0o600} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != mode {
			t.Fatalf("%s: %v, mode %v; want %v", p, err, fi.Mode().Perm(), mode)
		}
	}
	assertCSRFor(t, keyPEM, req)

	// A restart: the same key, in a request of its own.
	keyPEM2, req2, reused, err := PendingRequest(dir, "hjt_x")
	if err != nil {
		t.Fatal(err)
	}
	if !reused || !bytes.Equal(keyPEM2, keyPEM) {
		t.Fatalf("second call: reused %v, same key %v; want the saved key", reused, bytes.Equal(keyPEM2, keyPEM))
	}
	assertCSRFor(t, keyPEM, req2)

	if err := ForgetPendingKey(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("pending key still there after ForgetPendingKey: %v", err)
	}
	if err := ForgetPendingKey(dir); err != nil {
		t.Fatalf("forgetting twice: %v", err)
	}
	keyPEM3, _, reused, err := PendingRequest(dir, "hjt_x")
	if err != nil || reused || bytes.Equal(keyPEM3, keyPEM) {
		t.Fatalf("after forgetting: err %v reused %v; want a new key", err, reused)
	}
}

func TestCorruptPendingKeyIsNotReplaced(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, PendingKeyFile)
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, _, err := PendingRequest(dir, "hjt_x")
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "remove it to join with a new key") {
		t.Fatalf("got %v, want an error naming %s and what to do", err, path)
	}
	if b, _ := os.ReadFile(path); string(b) != "garbage" {
		t.Fatal("the corrupt key was overwritten")
	}
}

func assertCSRFor(t *testing.T, keyPEM []byte, req *streamv1.JoinRequest) {
	t.Helper()
	key, err := pki.ParseKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.ParseCSR([]byte(req.CsrPem))
	if err != nil {
		t.Fatal(err)
	}
	if !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(csr.PublicKey) {
		t.Fatal("the CSR is not for the pending key")
	}
}
