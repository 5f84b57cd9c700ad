package pilotlink

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/frontgate/internal/fakepilot"
	"github.com/hangarhq/hangar/internal/limits"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/streamrpc"
	"github.com/hangarhq/hangar/internal/testca"
	"github.com/hangarhq/hangar/internal/tlsutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ack(_ context.Context, req *streamv1.Request) *streamv1.Response {
	return &streamv1.Response{Body: &streamv1.Response_Ack{Ack: &streamv1.Ack{Message: "ok " + req.Id}}}
}

// run starts l and returns a function that stops it and reports Run's error.
func run(t *testing.T, l *Link) func() error {
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- l.Run(ctx) }()
	var stopped atomic.Bool
	var err error
	stop := func() error {
		if stopped.CompareAndSwap(false, true) {
			cancel()
			err = <-errc
		}
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHelloAndRequests(t *testing.T) {
	p := fakepilot.Start(t, "127.0.0.1:0", nil)
	l, err := New(Config{PilotAddress: p.Addr(), Credentials: p.ClientCredentials(t, "fg-1"), FrontgateID: "fg-1", Version: "v1.2.3", Capabilities: []string{"run_command"}, Handler: ack})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, l)
	h := p.WaitConnected(t, 10*time.Second)
	if h.Component != "frontgate" || h.Id != "fg-1" || h.Version != "v1.2.3" || !slices.Equal(h.Capabilities, []string{"run_command"}) {
		t.Fatalf("hello = %v", h)
	}
	waitFor(t, "Connected", l.Connected)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := p.Call(ctx, &streamv1.Request{Id: "r1", Body: &streamv1.Request_ListDrones{ListDrones: &streamv1.ListDrones{}}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetAck().GetMessage() != "ok r1" {
		t.Fatalf("response %v", resp)
	}

	if err := stop(); err != context.Canceled {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	if l.Connected() {
		t.Fatal("still connected after Run returned")
	}
}

// A cluster's metadata may be up to limits.MaxMetadataBytes, and pilot
// sends it in one envelope: the link must take envelopes above gRPC's
// 4 MiB default.
func TestReceivesLargestMetadataTree(t *testing.T) {
	p := fakepilot.Start(t, "127.0.0.1:0", nil)
	l, err := New(Config{PilotAddress: p.Addr(), Credentials: p.ClientCredentials(t, "fg-1"), FrontgateID: "fg-1", Handler: ack})
	if err != nil {
		t.Fatal(err)
	}
	run(t, l)
	p.WaitConnected(t, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kvs := map[string]string{"env/blob": strings.Repeat("x", limits.MaxMetadataBytes)}
	resp, err := p.Call(ctx, &streamv1.Request{Id: "big", Body: &streamv1.Request_ApplyMetadata{ApplyMetadata: &streamv1.ApplyMetadata{ClusterId: "cl-1", Kvs: kvs}}})
	if err != nil || resp.GetAck().GetMessage() != "ok big" {
		t.Fatalf("a %d-byte metadata tree: %v, %v", limits.MaxMetadataBytes, resp, err)
	}
}

func TestReconnectsAfterPilotRestart(t *testing.T) {
	p := fakepilot.Start(t, "127.0.0.1:0", nil)
	var ups, downs atomic.Int32
	l, err := New(Config{
		PilotAddress: p.Addr(), Credentials: p.ClientCredentials(t, "fg-1"), FrontgateID: "fg-1", Handler: ack,
		OnState: func(up bool) {
			if up {
				ups.Add(1)
			} else {
				downs.Add(1)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, l)
	p.WaitConnected(t, 10*time.Second)

	p.Stop()
	waitFor(t, "the link to notice pilot is gone", func() bool { return !l.Connected() })

	// While pilot is down, attempts fail and back off; a pilot that comes
	// back on the same address is found again.
	p2 := fakepilot.Start(t, p.Addr(), p.CA())
	h := p2.WaitConnected(t, 15*time.Second)
	if h.Id != "fg-1" {
		t.Fatalf("hello after restart = %v", h)
	}
	waitFor(t, "Connected", l.Connected)
	if ups.Load() != 2 || downs.Load() != 1 {
		t.Fatalf("state changes: %d ups, %d downs; want 2 and 1", ups.Load(), downs.Load())
	}
}

func TestRunStopsWhileBackingOff(t *testing.T) {
	// Nothing listens here once the fake pilot is gone.
	p := fakepilot.Start(t, "127.0.0.1:0", nil)
	addr := p.Addr()
	p.Stop()
	failed := make(chan struct{}, 1)
	log := slog.New(&signalHandler{msg: "cannot reach pilot", ch: failed})
	l, err := New(Config{PilotAddress: addr, Credentials: p.ClientCredentials(t, "fg-1"), FrontgateID: "fg-1", Handler: ack, Logger: log, BackoffBase: time.Hour, BackoffMax: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, l)
	select {
	case <-failed:
	case <-time.After(10 * time.Second):
		t.Fatal("the first attempt did not fail")
	}
	done := make(chan error, 1)
	go func() { done <- stop() }()
	select {
	case err := <-done:
		if err != context.Canceled {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return while waiting to reconnect")
	}
}

func TestNewChecksConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no address", Config{FrontgateID: "fg", Handler: ack, Credentials: insecure.NewCredentials()}, "pilot address is required"},
		{"no id", Config{PilotAddress: "x:1", Handler: ack, Credentials: insecure.NewCredentials()}, "frontgate id is required"},
		{"no handler", Config{PilotAddress: "x:1", FrontgateID: "fg", Credentials: insecure.NewCredentials()}, "handler is required"},
		{"no credentials", Config{PilotAddress: "x:1", FrontgateID: "fg", Handler: ack}, "transport credentials are required (mutual TLS with the frontgate's certificate)"},
	}
	for _, tt := range tests {
		if _, err := New(tt.cfg); err == nil || err.Error() != "pilot link: "+tt.want {
			t.Errorf("%s: New = %v, want %q", tt.name, err, tt.want)
		}
	}
}

// signalHandler sends on ch whenever a record with message msg is logged,
// keeping the attributes of the first such record.
type signalHandler struct {
	msg string
	ch  chan struct{}

	mu    sync.Mutex
	attrs map[string]string
}

func (h *signalHandler) attr(key string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.attrs[key]
}

func (h *signalHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *signalHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.mu.Lock()
		if h.attrs == nil {
			h.attrs = map[string]string{}
			r.Attrs(func(a slog.Attr) bool { h.attrs[a.Key] = a.Value.String(); return true })
		}
		h.mu.Unlock()
		select {
		case h.ch <- struct{}{}:
		default:
		}
	}
	return nil
}
func (h *signalHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *signalHandler) WithGroup(string) slog.Handler      { return h }

func TestCallWaitsForTheStreamAndCarriesRenewal(t *testing.T) {
	p := fakepilot.Start(t, "127.0.0.1:0", nil)
	id := pki.Identity{Kind: pki.KindFrontgate, ID: "fg-1"}
	creds := testca.Creds(t, p.CA(), id, time.Hour)
	l, err := New(Config{PilotAddress: p.Addr(), Credentials: credentials.NewTLS(creds.ClientConfig("127.0.0.1", pki.Identity{})), FrontgateID: "fg-1", Handler: ack})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// A call made before any stream is up waits for one.
	renewed := make(chan error, 1)
	go func() {
		renewed <- tlsutil.RenewOnce(ctx, creds, func(ctx context.Context, csrPEM, currentPEM, proof []byte) ([]byte, []byte, error) {
			resp, err := l.Call(ctx, &streamv1.Request{Body: &streamv1.Request_RenewCertificate{RenewCertificate: &streamv1.RenewCertificate{
				CsrPem: string(csrPEM), CurrentCertificatePem: string(currentPEM), Proof: proof,
			}}})
			if err != nil {
				return nil, nil, err
			}
			return []byte(resp.GetCertificate().GetCertificatePem()), []byte(resp.GetCertificate().GetCaPem()), nil
		})
	}()
	before := creds.Leaf().SerialNumber
	stop := run(t, l)
	if err := <-renewed; err != nil {
		t.Fatalf("renewal over the link: %v", err)
	}
	if creds.Leaf().SerialNumber.Cmp(before) == 0 || creds.Identity() != id {
		t.Fatalf("after renewal the certificate is %v of %s, want a new one of %s", creds.Leaf().SerialNumber, creds.Identity(), id)
	}
	if n := p.Renewals(id); n != 1 {
		t.Fatalf("pilot granted %d renewals, want 1", n)
	}

	// Pilot's refusal comes back as its error.
	_, err = l.Call(ctx, &streamv1.Request{Body: &streamv1.Request_Join{Join: &streamv1.JoinRequest{TokenId: "nope", TokenProof: []byte("proof"), CsrPem: "x"}}})
	if _, ok := err.(*streamrpc.Error); !ok {
		t.Fatalf("Call of a refused join = %v, want pilot's *streamrpc.Error", err)
	}

	if err := stop(); err != context.Canceled {
		t.Fatalf("Run = %v", err)
	}
	if _, err := l.Call(ctx, &streamv1.Request{Body: &streamv1.Request_ListDrones{ListDrones: &streamv1.ListDrones{}}}); !errors.Is(err, ErrStopped) {
		t.Fatalf("Call after Run returned = %v, want ErrStopped", err)
	}
}

func TestCallGivesUpWithoutStream(t *testing.T) {
	l, err := New(Config{PilotAddress: "127.0.0.1:1", Credentials: insecure.NewCredentials(), FrontgateID: "fg-1", Handler: ack})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = l.Call(ctx, &streamv1.Request{Body: &streamv1.Request_ListDrones{ListDrones: &streamv1.ListDrones{}}})
	if !errors.Is(err, ErrNotConnected) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Call without a stream = %v, want ErrNotConnected and DeadlineExceeded", err)
	}
}

func TestPilotRefusesFrontgateWithoutCertificate(t *testing.T) {
	p := fakepilot.Start(t, "127.0.0.1:0", nil)
	tc, err := tlsutil.AnonymousClientConfig(p.CA().CertPEM(), "127.0.0.1", pki.Identity{})
	if err != nil {
		t.Fatal(err)
	}
	failed := make(chan struct{}, 1)
	h := &signalHandler{msg: "pilot refuses this frontgate; if it was revoked, delete the clusters behind it with --force and stop this instance, otherwise check its certificate", ch: failed}
	// A tiny base: a refusal must still wait the full maximum, because
	// retrying soon cannot change pilot's answer.
	l, err := New(Config{PilotAddress: p.Addr(), Credentials: credentials.NewTLS(tc), FrontgateID: "fg-1", Handler: ack,
		Logger: slog.New(h), BackoffBase: time.Millisecond, BackoffMax: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	run(t, l)
	select {
	case <-failed:
	case <-time.After(10 * time.Second):
		t.Fatal("a link without a certificate was not refused")
	}
	if got := h.attr("retry_in"); got != time.Hour.String() {
		t.Fatalf("after a refusal the link retries in %s, want the maximum backoff (1h0m0s)", got)
	}
	if len(p.Hellos()) != 0 {
		t.Fatalf("pilot accepted hellos %v from a frontgate without a certificate", p.Hellos())
	}
}
