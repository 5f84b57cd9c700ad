package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/frontgate/metastore"
	"github.com/hangarhq/hangar/frontgate/relay"
	"github.com/hangarhq/hangar/internal/streamrpc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fakeMeta struct {
	applied map[string]map[string]string
	res     metastore.Result
	err     error
}

func (f *fakeMeta) Apply(_ context.Context, id string, kvs map[string]string) (metastore.Result, error) {
	if f.err != nil {
		return metastore.Result{}, f.err
	}
	f.applied[id] = kvs
	return f.res, nil
}

func (f *fakeMeta) Delete(_ context.Context, id string) (int64, error) {
	if f.err != nil {
		return 0, f.err
	}
	delete(f.applied, id)
	return 3, nil
}

type fakeDrones struct {
	mu       sync.Mutex
	nodes    []string
	req      *streamv1.Request
	deadline time.Time
	resp     *streamv1.Response
	err      error
	listed   string
}

func (f *fakeDrones) Call(ctx context.Context, node string, req *streamv1.Request) (*streamv1.Response, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nodes = append(f.nodes, node)
	f.req = req
	f.deadline, _ = ctx.Deadline()
	return f.resp, f.err
}

func (f *fakeDrones) List(cluster string) []*streamv1.DroneInfo {
	f.listed = cluster
	return []*streamv1.DroneInfo{{NodeId: "cln-a", ClusterId: "cl-1"}}
}

type observed struct {
	mu   sync.Mutex
	seen []string
}

func (o *observed) observe(kind, result string) {
	o.mu.Lock()
	o.seen = append(o.seen, kind+"="+result)
	o.mu.Unlock()
}

func newHandler(t *testing.T, m *fakeMeta, d *fakeDrones, o *observed) *Handler {
	t.Helper()
	h, err := New(Config{Metadata: m, Drones: d, Observe: o.observe})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func apply(cluster string, kvs map[string]string) *streamv1.Request {
	return &streamv1.Request{Id: "r", Body: &streamv1.Request_ApplyMetadata{ApplyMetadata: &streamv1.ApplyMetadata{ClusterId: cluster, Kvs: kvs}}}
}

func run(node, cmdID string) *streamv1.Request {
	return &streamv1.Request{Id: "r", Body: &streamv1.Request_RunCommand{RunCommand: &streamv1.RunCommand{NodeId: node, CommandId: cmdID, Cmd: "true"}}}
}

func TestMetadataRequests(t *testing.T) {
	tests := []struct {
		name     string
		req      *streamv1.Request
		res      metastore.Result
		err      error
		wantCode string
		wantMsg  string
	}{
		{"apply", apply("cl-1", map[string]string{"a": "1"}), metastore.Result{Puts: 1, Deletes: 2, Revision: 7}, nil, "", "1 keys written, 2 deleted at revision 7"},
		{"apply unchanged", apply("cl-1", nil), metastore.Result{Revision: 7}, nil, "", "unchanged at revision 7"},
		{"apply invalid", apply("CL", nil), metastore.Result{}, fmt.Errorf("%w: cluster_id %q", metastore.ErrInvalid, "CL"), streamrpc.CodeInvalid, `cluster_id "CL"`},
		{"apply too large", apply("cl-1", nil), metastore.Result{}, fmt.Errorf("x: %w", metastore.ErrTooManyOps), streamrpc.CodeInternal, "too large"},
		{"apply etcd down", apply("cl-1", nil), metastore.Result{}, errors.New("etcdserver: no leader"), streamrpc.CodeUnavailable, "no leader"},
		{"apply deadline", apply("cl-1", nil), metastore.Result{}, fmt.Errorf("read: %w", context.DeadlineExceeded), streamrpc.CodeDeadline, "read"},
		{"delete", &streamv1.Request{Body: &streamv1.Request_DeleteMetadata{DeleteMetadata: &streamv1.DeleteMetadata{ClusterId: "cl-1"}}}, metastore.Result{}, nil, "", "cluster cl-1: 3 keys deleted"},
		{"delete invalid", &streamv1.Request{Body: &streamv1.Request_DeleteMetadata{DeleteMetadata: &streamv1.DeleteMetadata{}}}, metastore.Result{}, fmt.Errorf("%w: cluster_id is required", metastore.ErrInvalid), streamrpc.CodeInvalid, "cluster_id is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &fakeMeta{applied: map[string]map[string]string{}, res: tt.res, err: tt.err}
			o := &observed{}
			resp := newHandler(t, m, &fakeDrones{}, o).Serve(ctxFor(t, time.Second), tt.req)
			checkResp(t, resp, tt.wantCode, tt.wantMsg)
			if tt.wantCode == "" && resp.GetAck() == nil {
				t.Fatalf("response %v has no ack", resp)
			}
			want := Kind(tt.req) + "=" + ResultOK
			if tt.wantCode != "" {
				want = Kind(tt.req) + "=" + tt.wantCode
			}
			if len(o.seen) != 1 || o.seen[0] != want {
				t.Fatalf("observed %v, want [%s]", o.seen, want)
			}
		})
	}
}

func checkResp(t *testing.T, resp *streamv1.Response, wantCode, wantMsg string) {
	t.Helper()
	msg := resp.GetAck().GetMessage()
	if e := resp.GetError(); e != nil {
		msg = e.Message
		if e.Code != wantCode {
			t.Fatalf("error %s: %s, want code %q", e.Code, e.Message, wantCode)
		}
	} else if wantCode != "" {
		t.Fatalf("response %v, want error %s", resp, wantCode)
	}
	if !strings.Contains(msg, wantMsg) {
		t.Fatalf("message %q does not contain %q", msg, wantMsg)
	}
}

func TestRelayedRequests(t *testing.T) {
	result := &streamv1.Response{Body: &streamv1.Response_CommandResult{CommandResult: &streamv1.CommandResult{CommandId: "c1", NodeId: "cln-a"}}}
	tests := []struct {
		name     string
		req      *streamv1.Request
		resp     *streamv1.Response
		err      error
		wantNode string
		wantCode string
		wantMsg  string
	}{
		{"run", run("cln-a", "c1"), result, nil, "cln-a", "", ""},
		{"run without node", run("", "c1"), nil, nil, "", streamrpc.CodeInvalid, "node_id is required"},
		{"run without command id", run("cln-a", ""), nil, nil, "", streamrpc.CodeInvalid, "command_id is required"},
		{"drone refuses", run("cln-a", "c1"), &streamv1.Response{}, &streamrpc.Error{Code: streamrpc.CodeInvalid, Message: "user nobody2 unknown"}, "cln-a", streamrpc.CodeInvalid, "run_command c1 on node cln-a: user nobody2 unknown"},
		{"not connected", run("cln-a", "c1"), nil, fmt.Errorf("node cln-a: not connected: %w (%w)", relay.ErrNotConnected, context.DeadlineExceeded), "cln-a", streamrpc.CodeUnavailable, "node cln-a: not connected"},
		{"no answer in time", run("cln-a", "c1"), nil, fmt.Errorf("node cln-a: no answer: %w", context.DeadlineExceeded), "cln-a", streamrpc.CodeDeadline, "node cln-a: no answer"},
		{"cancelled", run("cln-a", "c1"), nil, fmt.Errorf("node cln-a: %w", context.Canceled), "cln-a", streamrpc.CodeCancelled, "cln-a"},
		{"renderer", &streamv1.Request{Body: &streamv1.Request_ConfigureRenderer{ConfigureRenderer: &streamv1.ConfigureRenderer{NodeId: "cln-b", ClusterId: "cl-1"}}},
			&streamv1.Response{Body: &streamv1.Response_Ack{Ack: &streamv1.Ack{Message: "rendered"}}}, nil, "cln-b", "", "rendered"},
		{"renderer without node", &streamv1.Request{Body: &streamv1.Request_ConfigureRenderer{ConfigureRenderer: &streamv1.ConfigureRenderer{}}}, nil, nil, "", streamrpc.CodeInvalid, "configure_renderer: node_id is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &fakeDrones{resp: tt.resp, err: tt.err}
			o := &observed{}
			resp := newHandler(t, &fakeMeta{}, d, o).Serve(ctxFor(t, 5*time.Second), tt.req)
			checkResp(t, resp, tt.wantCode, tt.wantMsg)
			if tt.wantNode == "" {
				if len(d.nodes) != 0 {
					t.Fatalf("invalid request was relayed to %v", d.nodes)
				}
				return
			}
			if len(d.nodes) != 1 || d.nodes[0] != tt.wantNode {
				t.Fatalf("relayed to %v, want [%s]", d.nodes, tt.wantNode)
			}
			if Kind(d.req) != Kind(tt.req) {
				t.Fatalf("relayed a %s, want %s", Kind(d.req), Kind(tt.req))
			}
			if tt.name == "run" && resp.GetCommandResult().GetCommandId() != "c1" {
				t.Fatalf("response %v lacks the command result", resp)
			}
		})
	}
}

func TestRelayEndsBeforePilotDeadline(t *testing.T) {
	d := &fakeDrones{resp: &streamv1.Response{}}
	ctx := ctxFor(t, 2*time.Second)
	pilotDL, _ := ctx.Deadline()
	newHandler(t, &fakeMeta{}, d, &observed{}).Serve(ctx, run("cln-a", "c1"))
	if d.deadline.IsZero() || !d.deadline.Before(pilotDL.Add(-100*time.Millisecond)) {
		t.Fatalf("relay deadline %v is not before pilot's %v by a margin", d.deadline, pilotDL)
	}
}

func TestListDronesAndUnknown(t *testing.T) {
	d := &fakeDrones{}
	h := newHandler(t, &fakeMeta{}, d, &observed{})
	resp := h.Serve(ctxFor(t, time.Second), &streamv1.Request{Body: &streamv1.Request_ListDrones{ListDrones: &streamv1.ListDrones{ClusterId: "cl-1"}}})
	if got := resp.GetDroneList().GetDrones(); len(got) != 1 || got[0].NodeId != "cln-a" || d.listed != "cl-1" {
		t.Fatalf("list = %v (asked for %q)", resp, d.listed)
	}
	resp = h.Serve(ctxFor(t, time.Second), &streamv1.Request{Id: "r9"})
	checkResp(t, resp, streamrpc.CodeInvalid, "request r9: no body")
}

func TestNewNeedsDependencies(t *testing.T) {
	if _, err := New(Config{Metadata: &fakeMeta{}}); err == nil {
		t.Fatal("New without a relay succeeded")
	}
}

// seqDrones answers RunCommand with states from a script, then EXITED.
type seqDrones struct {
	fakeDrones
	states []streamv1.CommandState
	calls  int
	ids    []string
}

func (s *seqDrones) Call(_ context.Context, node string, req *streamv1.Request) (*streamv1.Response, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	state := streamv1.CommandState_COMMAND_STATE_EXITED
	if s.calls < len(s.states) {
		state = s.states[s.calls]
	}
	s.calls++
	s.ids = append(s.ids, req.GetRunCommand().GetCommandId())
	return &streamv1.Response{Body: &streamv1.Response_CommandResult{CommandResult: &streamv1.CommandResult{CommandId: req.GetRunCommand().GetCommandId(), NodeId: node, State: state}}}, nil
}

func TestRunCommandWaitsOutRunning(t *testing.T) {
	running := streamv1.CommandState_COMMAND_STATE_RUNNING
	d := &seqDrones{states: []streamv1.CommandState{running, running}}
	h, err := New(Config{Metadata: &fakeMeta{}, Drones: d, PollInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	resp := h.Serve(ctxFor(t, 10*time.Second), run("cln-a", "c1"))
	if got := resp.GetCommandResult().GetState(); got != streamv1.CommandState_COMMAND_STATE_EXITED {
		t.Fatalf("state %v, want EXITED", got)
	}
	if d.calls != 3 || d.ids[0] != "c1" || d.ids[2] != "c1" {
		t.Fatalf("asked %d times with ids %v, want 3 times for c1", d.calls, d.ids)
	}

	// A command still running at the deadline is answered as running.
	d = &seqDrones{states: slices.Repeat([]streamv1.CommandState{running}, 1000)}
	h, err = New(Config{Metadata: &fakeMeta{}, Drones: d, PollInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	resp = h.Serve(ctxFor(t, 300*time.Millisecond), run("cln-a", "c2"))
	if resp.GetError() != nil || resp.GetCommandResult().GetState() != running {
		t.Fatalf("response %v, want the RUNNING result", resp)
	}
}
