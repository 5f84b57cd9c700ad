package fglink

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/streamrpc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func serve(t *testing.T) (*Server, string) {
	t.Helper()
	s := New(nil, streamrpc.Options{HeartbeatInterval: 100 * time.Millisecond})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	streamv1.RegisterFrontgateLinkServer(gs, s)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return s, lis.Addr().String()
}

// fakeFrontgate dials the server and answers requests with h until stopped.
type fakeFrontgate struct {
	stop func()
	done chan struct{}
}

func dial(t *testing.T, addr, component, id string, h streamrpc.Handler) *fakeFrontgate {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	st, err := streamv1.NewFrontgateLinkClient(conn).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := streamrpc.SendHello(st, &streamv1.Hello{Component: component, Id: id}); err != nil {
		t.Fatal(err)
	}
	f := &fakeFrontgate{done: make(chan struct{})}
	go func() {
		defer close(f.done)
		_ = streamrpc.NewPeer(st, h, streamrpc.Options{HeartbeatInterval: 100 * time.Millisecond}).Run(ctx)
	}()
	var once sync.Once
	f.stop = func() { once.Do(func() { cancel(); <-f.done; conn.Close() }) }
	t.Cleanup(f.stop)
	return f
}

func list(id string) *streamv1.Request {
	return &streamv1.Request{Id: id, Body: &streamv1.Request_ListDrones{ListDrones: &streamv1.ListDrones{}}}
}

func TestCallWaitsForTheFrontgate(t *testing.T) {
	s, addr := serve(t)
	res := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := s.Call(ctx, "fg-1", list(""))
		if err == nil && resp.GetAck().GetMessage() != "fg-1 here" {
			err = errors.New("wrong answer: " + resp.String())
		}
		res <- err
	}()
	// The call is pending before the frontgate exists.
	dial(t, addr, "frontgate", "fg-1", func(context.Context, *streamv1.Request) *streamv1.Response {
		return &streamv1.Response{Body: &streamv1.Response_Ack{Ack: &streamv1.Ack{Message: "fg-1 here"}}}
	})
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	if !s.Connected("fg-1") || s.Count() != 1 {
		t.Fatalf("connected=%v count=%d", s.Connected("fg-1"), s.Count())
	}
}

func TestCallResendsAfterTheStreamBreaks(t *testing.T) {
	s, addr := serve(t)
	var mu sync.Mutex
	seen := map[string]int{}
	first := make(chan struct{})
	var firstOnce sync.Once
	// The first frontgate receives the request and never answers.
	f1 := dial(t, addr, "frontgate", "fg-1", func(ctx context.Context, req *streamv1.Request) *streamv1.Response {
		mu.Lock()
		seen[req.Id]++
		mu.Unlock()
		firstOnce.Do(func() { close(first) })
		<-ctx.Done()
		return &streamv1.Response{}
	})
	res := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := s.Call(ctx, "fg-1", list("req-1"))
		if err == nil && resp.GetAck().GetMessage() != "second" {
			err = errors.New("answer from the wrong stream: " + resp.String())
		}
		res <- err
	}()
	<-first
	f1.stop()
	dial(t, addr, "frontgate", "fg-1", func(_ context.Context, req *streamv1.Request) *streamv1.Response {
		mu.Lock()
		seen[req.Id]++
		mu.Unlock()
		return &streamv1.Response{Body: &streamv1.Response_Ack{Ack: &streamv1.Ack{Message: "second"}}}
	})
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen["req-1"] != 2 {
		t.Fatalf("request req-1 reached frontgates %d times, want 2 (sent, then re-sent with the same id)", seen["req-1"])
	}
}

func TestOnlyFrontgatesMayConnect(t *testing.T) {
	s, addr := serve(t)
	f := dial(t, addr, "drone", "cln-1", nil)
	select {
	case <-f.done:
	case <-time.After(5 * time.Second):
		t.Fatal("a drone's stream to the frontgate link was not refused")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := s.Call(ctx, "cln-1", list("")); err == nil || !strings.Contains(err.Error(), "not connected") {
		t.Fatalf("call to a refused peer: %v", err)
	}
}
