package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/drone/executor"
	"github.com/hangarhq/hangar/internal/streamrpc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// connection is one drone stream as the fake frontgate sees it.
type connection struct {
	hello *streamv1.Hello
	peer  *streamrpc.Peer
}

// fakeFrontgate serves DroneLink with a streamrpc.Peer per stream, like the
// real frontgate, and hands each connection to the test.
type fakeFrontgate struct {
	streamv1.UnimplementedDroneLinkServer
	conns chan connection
	addr  string
}

func (f *fakeFrontgate) Connect(st grpc.BidiStreamingServer[streamv1.Envelope, streamv1.Envelope]) error {
	h, err := streamrpc.RecvHello(st, 5*time.Second)
	if err != nil {
		return err
	}
	p := streamrpc.NewPeer(st, nil, streamrpc.Options{})
	select {
	case f.conns <- connection{h, p}:
	case <-st.Context().Done():
		return nil
	}
	_ = p.Run(st.Context())
	return nil
}

func startFrontgate(t *testing.T) *fakeFrontgate {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeFrontgate{conns: make(chan connection, 4), addr: lis.Addr().String()}
	gs := grpc.NewServer()
	streamv1.RegisterDroneLinkServer(gs, f)
	served := make(chan struct{})
	go func() { defer close(served); _ = gs.Serve(lis) }()
	t.Cleanup(func() { gs.Stop(); <-served })
	return f
}

func (f *fakeFrontgate) next(t *testing.T) connection {
	t.Helper()
	select {
	case c := <-f.conns:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("the drone never connected")
		return connection{}
	}
}

// fakeRenderer records deliveries and fails when told to.
type fakeRenderer struct {
	mu    sync.Mutex
	files map[string][]byte
	err   error
}

func (r *fakeRenderer) Configure(_ context.Context, files map[string][]byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.files = files
	return r.err
}

type drone struct {
	dir  string
	exec *executor.Executor
	rend *fakeRenderer
}

// startDrone runs an agent against addr until the test ends.
func startDrone(t *testing.T, addr string) *drone {
	t.Helper()
	d := &drone{dir: t.TempDir(), rend: &fakeRenderer{}}
	var err error
	d.exec, err = executor.New(executor.Config{DataDir: d.dir, NodeID: "cln-1"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{
		NodeID: "cln-1", ClusterID: "cl-1", FrontgateAddress: addr, Version: "test",
		Executor: d.exec, Renderer: d.rend,
		Logger:      slog.New(slog.NewTextHandler(t.Output(), nil)),
		BackoffBase: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
		_ = d.exec.Close()
	})
	return d
}

func runCommand(rc *streamv1.RunCommand) *streamv1.Request {
	return &streamv1.Request{Body: &streamv1.Request_RunCommand{RunCommand: rc}}
}

func call(t *testing.T, p *streamrpc.Peer, req *streamv1.Request) (*streamv1.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return p.Call(ctx, req)
}

func TestServesRequests(t *testing.T) {
	fg := startFrontgate(t)
	d := startDrone(t, fg.addr)
	c := fg.next(t)
	if c.hello.Component != "drone" || c.hello.Id != "cln-1" || c.hello.ClusterId != "cl-1" || c.hello.Version != "test" {
		t.Fatalf("hello: %v", c.hello)
	}

	resp, err := call(t, c.peer, runCommand(&streamv1.RunCommand{NodeId: "cln-1", CommandId: "c1", Cmd: "echo hi; exit 4"}))
	if err != nil {
		t.Fatal(err)
	}
	res := resp.GetCommandResult()
	if res.GetState() != streamv1.CommandState_COMMAND_STATE_EXITED || res.GetExitCode() != 4 || string(res.GetOutput()) != "hi\n" {
		t.Fatalf("result: %v", res)
	}

	files := map[string][]byte{"conf.d/a.toml": []byte("x")}
	resp, err = call(t, c.peer, &streamv1.Request{Body: &streamv1.Request_ConfigureRenderer{ConfigureRenderer: &streamv1.ConfigureRenderer{NodeId: "cln-1", ClusterId: "cl-1", Files: files}}})
	if err != nil || resp.GetAck() == nil {
		t.Fatalf("configure: %v %v", resp, err)
	}
	d.rend.mu.Lock()
	got := d.rend.files
	d.rend.err = errors.New("render conf.d/a.toml (template a.tmpl): key does not exist")
	d.rend.mu.Unlock()
	if !bytes.Equal(got["conf.d/a.toml"], []byte("x")) {
		t.Fatalf("renderer got %v", got)
	}

	for _, tc := range []struct {
		name string
		req  *streamv1.Request
		code string
		want string
	}{
		{"render failure names the template", &streamv1.Request{Body: &streamv1.Request_ConfigureRenderer{ConfigureRenderer: &streamv1.ConfigureRenderer{Files: files}}}, streamrpc.CodeInvalid, "a.tmpl"},
		{"command for another node", runCommand(&streamv1.RunCommand{NodeId: "cln-2", CommandId: "c2", Cmd: "true"}), streamrpc.CodeInvalid, "cln-2"},
		{"bad command id", runCommand(&streamv1.RunCommand{CommandId: "a/b", Cmd: "true"}), streamrpc.CodeInvalid, "command_id"},
		{"renderer for another cluster", &streamv1.Request{Body: &streamv1.Request_ConfigureRenderer{ConfigureRenderer: &streamv1.ConfigureRenderer{ClusterId: "cl-9"}}}, streamrpc.CodeInvalid, "cl-9"},
		{"request a drone does not serve", &streamv1.Request{Body: &streamv1.Request_ListDrones{ListDrones: &streamv1.ListDrones{}}}, streamrpc.CodeInvalid, "ListDrones"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := call(t, c.peer, tc.req)
			if !streamrpc.IsCode(err, tc.code) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a %s error naming %q", err, tc.code, tc.want)
			}
		})
	}
}

// proxy relays TCP between the drone and the frontgate and can cut every
// connection it carries, as a network failure would.
type proxy struct {
	lis    net.Listener
	mu     sync.Mutex
	target string
	// attempts counts accepted connections, relayed or not.
	attempts int
	conns    []net.Conn
	wg       sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{lis: lis, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.lis.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.lis.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.attempts++
		p.mu.Unlock()
		p.mu.Lock()
		target := p.target
		p.mu.Unlock()
		out, err := net.Dial("tcp", target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(in, out)
		go p.pipe(out, in)
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	// One direction ending ends the other too.
	dst.Close()
	src.Close()
}

// setTarget relays new connections to addr.
func (p *proxy) setTarget(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = addr
}

// cut closes every connection relayed so far.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) close() {
	p.lis.Close()
	p.cut()
	p.wg.Wait()
}

func TestCommandSurvivesAConnectionCut(t *testing.T) {
	fg := startFrontgate(t)
	px := startProxy(t, fg.addr)
	d := startDrone(t, px.addr())
	first := fg.next(t)

	marker := filepath.Join(d.dir, "marker")
	req := &streamv1.RunCommand{NodeId: "cln-1", CommandId: "job-1.task-3", Cmd: fmt.Sprintf("sleep 1; echo ran >> %s", marker), TimeoutSeconds: 30}
	callErr := make(chan error, 1)
	go func() {
		_, err := call(t, first.peer, runCommand(req))
		callErr <- err
	}()

	// Cut the network once the command is running on the drone.
	record := filepath.Join(d.dir, "commands", req.CommandId+".json")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(record); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the command never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	px.cut()
	select {
	case err := <-callErr:
		if err == nil {
			t.Fatal("the call on the cut stream succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the call on the cut stream never failed")
	}

	// The drone comes back, and the frontgate asks again with the same id.
	second := fg.next(t)
	resp, err := call(t, second.peer, runCommand(req))
	if err != nil {
		t.Fatal(err)
	}
	res := resp.GetCommandResult()
	if res.GetState() != streamv1.CommandState_COMMAND_STATE_EXITED || res.GetExitCode() != 0 {
		t.Fatalf("result after reconnect: %v", res)
	}
	b, err := os.ReadFile(marker)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "ran\n" {
		t.Fatalf("marker %q: the command must have run exactly once", b)
	}
}

func TestConnectsOnceTheFrontgateIsUp(t *testing.T) {
	// Nothing listens behind the proxy at first: a port just released.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	px := startProxy(t, closed)
	startDrone(t, px.addr())

	// Let the drone fail a few attempts, then bring the frontgate up.
	deadline := time.Now().Add(10 * time.Second)
	for {
		px.mu.Lock()
		tried := px.attempts
		px.mu.Unlock()
		if tried >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the drone did not retry")
		}
		time.Sleep(10 * time.Millisecond)
	}
	fg := startFrontgate(t)
	px.setTarget(fg.addr)
	c := fg.next(t)
	if _, err := call(t, c.peer, runCommand(&streamv1.RunCommand{CommandId: "late", Cmd: "true"})); err != nil {
		t.Fatal(err)
	}
}

func TestNewRejectsIncompleteConfig(t *testing.T) {
	full := Config{NodeID: "n", ClusterID: "c", FrontgateAddress: "a:1", Executor: &executor.Executor{}, Renderer: &fakeRenderer{}}
	for _, tc := range []struct {
		want   string
		mutate func(*Config)
	}{
		{"NodeID", func(c *Config) { c.NodeID = "" }},
		{"ClusterID", func(c *Config) { c.ClusterID = "" }},
		{"FrontgateAddress", func(c *Config) { c.FrontgateAddress = "" }},
		{"Executor", func(c *Config) { c.Executor = nil }},
		{"Renderer", func(c *Config) { c.Renderer = nil }},
	} {
		cfg := full
		tc.mutate(&cfg)
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("without %s: %v", tc.want, err)
		}
	}
	if _, err := New(full); err != nil {
		t.Fatal(err)
	}
}
