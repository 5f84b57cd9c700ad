package join

import (
	"context"
	"crypto"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
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

func TestNewRequestCarriesAValidCSR(t *testing.T) {
	keyPEM, req, err := NewRequest("hjt_x")
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.ParseKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.ParseCSR([]byte(req.CsrPem))
	if err != nil || req.Token != "hjt_x" {
		t.Fatalf("csr %v token %q", err, req.Token)
	}
	if !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(csr.PublicKey) {
		t.Fatal("the CSR is not for the returned key")
	}
}
