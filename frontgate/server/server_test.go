package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/frontgate/access"
	"github.com/hangarhq/hangar/frontgate/metastore"
	"github.com/hangarhq/hangar/frontgate/relay"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/streamrpc"
	"github.com/hangarhq/hangar/internal/testca"
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

func (f *fakeMeta) ApplyUnder(_ context.Context, id, under string, kvs map[string]string) (metastore.Result, error) {
	if f.err != nil {
		return metastore.Result{}, f.err
	}
	f.applied[id+":"+under] = kvs
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
	reports  map[string]*streamv1.RenderReport
	health   map[string]*streamv1.HealthReport
	metrics  map[string]*streamv1.MetricsReport
}

func (f *fakeDrones) Measured(node string, mr *streamv1.MetricsReport) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.metrics == nil {
		f.metrics = map[string]*streamv1.MetricsReport{}
	}
	f.metrics[node] = mr
}

func (f *fakeDrones) Healthed(node string, hr *streamv1.HealthReport) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.health == nil {
		f.health = map[string]*streamv1.HealthReport{}
	}
	f.health[node] = hr
}

func (f *fakeDrones) Rendered(node string, rr *streamv1.RenderReport) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.reports == nil {
		f.reports = map[string]*streamv1.RenderReport{}
	}
	f.reports[node] = rr
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

func (f *fakeDrones) Refuse(node string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nodes = append(f.nodes, "refuse:"+node)
	return node == "cln-connected"
}

// fakeAccess records the access changes asked for.
type fakeAccess struct {
	mu    sync.Mutex
	calls []string
	err   error
}

func (f *fakeAccess) record(call string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	return f.err
}

func (f *fakeAccess) SetReaders(_ context.Context, cluster string, nodes []string) error {
	return f.record(fmt.Sprintf("readers %s %v", cluster, nodes))
}

func (f *fakeAccess) DeleteCluster(_ context.Context, cluster string) error {
	return f.record("delete " + cluster)
}

func (f *fakeAccess) Revoke(_ context.Context, node, cluster string) error {
	return f.record("revoke " + node + " " + cluster)
}

// fakePilot answers with resp or err and records what it was sent.
type fakePilot struct {
	mu   sync.Mutex
	sent []*streamv1.Request
	resp *streamv1.Response
	err  error
}

func (f *fakePilot) Call(_ context.Context, req *streamv1.Request) (*streamv1.Response, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, req)
	return f.resp, f.err
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
	h, err := New(Config{Metadata: m, Drones: d, Access: &fakeAccess{}, Pilot: &fakePilot{}, Observe: o.observe})
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

func subtree(cluster, under string, kvs map[string]string) *streamv1.Request {
	return &streamv1.Request{Id: "r", Body: &streamv1.Request_ApplyMetadataSubtree{ApplyMetadataSubtree: &streamv1.ApplyMetadataSubtree{ClusterId: cluster, Under: under, Kvs: kvs}}}
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
		{"apply subtree", subtree("cl-1", "links/", map[string]string{"links/zk/x": "1"}), metastore.Result{Puts: 1, Revision: 8}, nil, "", "cluster cl-1 under links/: 1 keys written, 0 deleted at revision 8"},
		{"apply subtree unchanged", subtree("cl-1", "links/", nil), metastore.Result{Revision: 8}, nil, "", "under links/ unchanged at revision 8"},
		{"apply subtree of no tree", subtree("cl-1", "links/", nil), metastore.Result{}, fmt.Errorf("x: %w", metastore.ErrNoTree), streamrpc.CodeNotFound, "no metadata tree"},
		{"apply subtree outside", subtree("cl-1", "links/", map[string]string{"env/a": "1"}), metastore.Result{}, fmt.Errorf("%w: key outside", metastore.ErrInvalid), streamrpc.CodeInvalid, "key outside"},
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
	if _, err := New(Config{Metadata: &fakeMeta{}, Drones: &fakeDrones{}, Pilot: &fakePilot{}}); err == nil || !strings.Contains(err.Error(), "access manager") {
		t.Fatalf("New without an access manager = %v", err)
	}
}

// runningDrones answers RunCommand as a drone does: when the command ends
// (end is closed), or with RUNNING when the request's deadline comes first.
type runningDrones struct {
	fakeDrones
	end   chan struct{}
	calls atomic.Int32
}

func (d *runningDrones) Call(ctx context.Context, node string, req *streamv1.Request) (*streamv1.Response, error) {
	d.calls.Add(1)
	state := streamv1.CommandState_COMMAND_STATE_EXITED
	select {
	case <-d.end:
	case <-ctx.Done():
		state = streamv1.CommandState_COMMAND_STATE_RUNNING
	}
	return &streamv1.Response{Body: &streamv1.Response_CommandResult{CommandResult: &streamv1.CommandResult{CommandId: req.GetRunCommand().GetCommandId(), NodeId: node, State: state}}}, nil
}

// The result of a command is pushed when it ends: the frontgate relays
// pilot's request once and answers with the drone's answer, without asking
// again on a timer.
func TestRunCommandResultIsPushedWhenItEnds(t *testing.T) {
	d := &runningDrones{end: make(chan struct{})}
	h, err := New(Config{Metadata: &fakeMeta{}, Drones: d, Access: &fakeAccess{}, Pilot: &fakePilot{}})
	if err != nil {
		t.Fatal(err)
	}
	answered := make(chan *streamv1.Response, 1)
	go func() { answered <- h.Serve(ctxFor(t, 10*time.Second), run("cln-a", "c1")) }()
	deadline := time.Now().Add(10 * time.Second)
	for d.calls.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the command was never relayed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case resp := <-answered:
		t.Fatalf("answered %v before the command ended", resp)
	default:
	}
	close(d.end)
	resp := <-answered
	if got := resp.GetCommandResult().GetState(); got != streamv1.CommandState_COMMAND_STATE_EXITED {
		t.Fatalf("state %v, want EXITED", got)
	}
	if n := d.calls.Load(); n != 1 {
		t.Fatalf("the drone was asked %d times, want once", n)
	}

	// A command still running at the deadline is answered as running,
	// after one request.
	d = &runningDrones{end: make(chan struct{})}
	h, err = New(Config{Metadata: &fakeMeta{}, Drones: d, Access: &fakeAccess{}, Pilot: &fakePilot{}})
	if err != nil {
		t.Fatal(err)
	}
	resp = h.Serve(ctxFor(t, 300*time.Millisecond), run("cln-a", "c2"))
	if resp.GetError() != nil || resp.GetCommandResult().GetState() != streamv1.CommandState_COMMAND_STATE_RUNNING {
		t.Fatalf("response %v, want the RUNNING result", resp)
	}
	if n := d.calls.Load(); n != 1 {
		t.Fatalf("the drone was asked %d times, want once", n)
	}
}

func TestAccessFollowsMetadata(t *testing.T) {
	tests := []struct {
		name      string
		req       *streamv1.Request
		accessErr error
		wantCalls []string
		wantCode  string
		wantMsg   string
	}{
		{
			"apply sets readers", &streamv1.Request{Body: &streamv1.Request_ApplyMetadata{ApplyMetadata: &streamv1.ApplyMetadata{ClusterId: "cl-1", Kvs: map[string]string{"a": "1"}, ReaderNodeIds: []string{"cln-a", "cln-b"}}}},
			nil, []string{"readers cl-1 [cln-a cln-b]"}, "", "2 readers",
		},
		{
			"bad reader is invalid and writes nothing", &streamv1.Request{Body: &streamv1.Request_ApplyMetadata{ApplyMetadata: &streamv1.ApplyMetadata{ClusterId: "cl-1", ReaderNodeIds: []string{"../x"}}}},
			fmt.Errorf("cluster cl-1: reader_node_ids: %w: node id \"../x\"", access.ErrInvalid), []string{"readers cl-1 [../x]"}, streamrpc.CodeInvalid, `node id "../x"`,
		},
		{
			"etcd down while setting readers", apply("cl-1", nil),
			errors.New("etcdserver: no leader"), []string{"readers cl-1 []"}, streamrpc.CodeUnavailable, "no leader",
		},
		{
			"delete removes the readers", &streamv1.Request{Body: &streamv1.Request_DeleteMetadata{DeleteMetadata: &streamv1.DeleteMetadata{ClusterId: "cl-1"}}},
			nil, []string{"delete cl-1"}, "", "readers removed",
		},
		{
			"revoke", &streamv1.Request{Body: &streamv1.Request_Revoke{Revoke: &streamv1.Revoke{NodeId: "cln-connected", ClusterId: "cl-1"}}},
			nil, []string{"revoke cln-connected cl-1"}, "", "node cln-connected revoked; its stream was ended",
		},
		{
			"revoke of an absent node", &streamv1.Request{Body: &streamv1.Request_Revoke{Revoke: &streamv1.Revoke{NodeId: "cln-away", ClusterId: "cl-1"}}},
			nil, []string{"revoke cln-away cl-1"}, "", "it was not connected",
		},
		{
			"revoke without node", &streamv1.Request{Body: &streamv1.Request_Revoke{Revoke: &streamv1.Revoke{ClusterId: "cl-1"}}},
			nil, nil, streamrpc.CodeInvalid, `revoke: invalid access request: node id ""`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &fakeMeta{applied: map[string]map[string]string{}}
			a := &fakeAccess{err: tt.accessErr}
			d := &fakeDrones{}
			h, err := New(Config{Metadata: m, Drones: d, Access: a, Pilot: &fakePilot{}})
			if err != nil {
				t.Fatal(err)
			}
			resp := h.Serve(ctxFor(t, time.Second), tt.req)
			checkResp(t, resp, tt.wantCode, tt.wantMsg)
			if !slices.Equal(a.calls, tt.wantCalls) {
				t.Fatalf("access calls %v, want %v", a.calls, tt.wantCalls)
			}
			if tt.wantCode != "" && len(m.applied) > 0 {
				t.Fatalf("metadata written although access failed: %v", m.applied)
			}
			if rv := tt.req.GetRevoke(); rv != nil && rv.NodeId != "" && !slices.Equal(d.nodes, []string{"refuse:" + rv.NodeId}) {
				t.Fatalf("relay calls %v, want the node refused", d.nodes)
			}
		})
	}
}

func renewReq(t *testing.T, ca *pki.CA, id pki.Identity) *streamv1.Request {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := ca.Issue(key.Public(), id, nil, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &streamv1.Request{Body: &streamv1.Request_RenewCertificate{RenewCertificate: &streamv1.RenewCertificate{CsrPem: "CSR", CurrentCertificatePem: string(certPEM), Proof: []byte("proof")}}}
}

func TestDroneRenewalCarriedToPilot(t *testing.T) {
	ca := testca.New(t)
	drone := pki.Identity{Kind: pki.KindDrone, ID: "cln-a", Cluster: "cl-1"}
	other := pki.Identity{Kind: pki.KindDrone, ID: "cln-b", Cluster: "cl-1"}
	granted := &streamv1.Response{Body: &streamv1.Response_Certificate{Certificate: &streamv1.Certificate{CertificatePem: "NEW"}}}
	tests := []struct {
		name     string
		req      *streamv1.Request
		pilot    *fakePilot
		wantCode string
		wantMsg  string
		wantSent bool
	}{
		{"own certificate", renewReq(t, ca, drone), &fakePilot{resp: granted}, "", "", true},
		{"another drone's certificate", renewReq(t, ca, other), &fakePilot{resp: granted}, streamrpc.CodePermissionDenied, "a drone renews only its own", false},
		{"no certificate", &streamv1.Request{Body: &streamv1.Request_RenewCertificate{RenewCertificate: &streamv1.RenewCertificate{}}}, &fakePilot{}, streamrpc.CodeInvalid, "current_certificate_pem", false},
		{"refused by pilot", renewReq(t, ca, drone), &fakePilot{err: &streamrpc.Error{Code: "permission_denied", Message: "node revoked"}}, "permission_denied", "pilot: node revoked", true},
		{"pilot unreachable", renewReq(t, ca, drone), &fakePilot{err: errors.New("no stream to pilot")}, streamrpc.CodeUnavailable, "no stream to pilot", true},
		{"not a renewal", run("cln-a", "c1"), &fakePilot{}, streamrpc.CodeInvalid, "only renew_certificate", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := &observed{}
			h, err := New(Config{Metadata: &fakeMeta{}, Drones: &fakeDrones{}, Access: &fakeAccess{}, Pilot: tt.pilot, Observe: o.observe})
			if err != nil {
				t.Fatal(err)
			}
			resp := h.ServeDrone(ctxFor(t, time.Second), drone, tt.req)
			checkResp(t, resp, tt.wantCode, tt.wantMsg)
			if tt.wantCode == "" && resp.GetCertificate().GetCertificatePem() != "NEW" {
				t.Fatalf("response %v, want pilot's certificate", resp)
			}
			if sent := len(tt.pilot.sent) > 0; sent != tt.wantSent {
				t.Fatalf("sent to pilot: %v, want %v", sent, tt.wantSent)
			}
			if tt.wantSent && !proto.Equal(tt.pilot.sent[0].GetRenewCertificate(), tt.req.GetRenewCertificate()) {
				t.Fatal("the renewal reached pilot changed")
			}
		})
	}
}

func TestJoinCarriedToPilot(t *testing.T) {
	cert := &streamv1.Certificate{CertificatePem: "CERT", CaPem: "CA"}
	p := &fakePilot{resp: &streamv1.Response{Body: &streamv1.Response_Certificate{Certificate: cert}}}
	o := &observed{}
	h, err := New(Config{Metadata: &fakeMeta{}, Drones: &fakeDrones{}, Access: &fakeAccess{}, Pilot: p, Observe: o.observe})
	if err != nil {
		t.Fatal(err)
	}
	req := &streamv1.JoinRequest{TokenId: "tok", TokenProof: []byte("proof"), CsrPem: "CSR"}
	got, err := h.Join(ctxFor(t, time.Second), req)
	if err != nil || got.GetCertificatePem() != "CERT" {
		t.Fatalf("Join = %v, %v", got, err)
	}
	if len(p.sent) != 1 || !proto.Equal(p.sent[0].GetJoin(), req) {
		t.Fatalf("pilot was sent %v, want the join unchanged", p.sent)
	}
	p.resp, p.err = nil, &streamrpc.Error{Code: "permission_denied", Message: "token used"}
	if _, err := h.Join(ctxFor(t, time.Second), req); !streamrpc.IsCode(err, "permission_denied") {
		t.Fatalf("refused Join = %v, want pilot's error", err)
	}
	if !slices.Equal(o.seen, []string{"join=ok", "join=permission_denied"}) {
		t.Fatalf("observed %v", o.seen)
	}
}

// TestHealthReportKept: a drone's health report is kept under its own
// identity, whatever node it names; one pilot could not take is refused
// and not kept.
func TestHealthReportKept(t *testing.T) {
	drone := pki.Identity{Kind: pki.KindDrone, ID: "cln-a", Cluster: "cl-1"}
	report := func(hr *streamv1.HealthReport) *streamv1.Request {
		return &streamv1.Request{Body: &streamv1.Request_HealthReport{HealthReport: hr}}
	}
	for _, tc := range []struct {
		name     string
		hr       *streamv1.HealthReport
		wantCode string
		wantMsg  string
	}{
		{"unhealthy", &streamv1.HealthReport{Status: "unhealthy", Failures: 3, Check: &streamv1.CommandRun{ExitCode: 1, Output: "down"}}, "", ""},
		{"status unknown to pilot", &streamv1.HealthReport{Status: "dead"}, streamrpc.CodeInvalid, `status "dead": want unknown, healthy or unhealthy`},
		{"output too long", &streamv1.HealthReport{Status: "healthy", Check: &streamv1.CommandRun{Output: strings.Repeat("x", 5000)}}, streamrpc.CodeInvalid, "check.output: 5000 bytes; at most 4096"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &fakeDrones{}
			h, err := New(Config{Metadata: &fakeMeta{}, Drones: d, Access: &fakeAccess{}, Pilot: &fakePilot{}, Observe: (&observed{}).observe})
			if err != nil {
				t.Fatal(err)
			}
			checkResp(t, h.ServeDrone(ctxFor(t, time.Second), drone, report(tc.hr)), tc.wantCode, tc.wantMsg)
			kept := d.health["cln-a"]
			if tc.wantCode == "" && !proto.Equal(kept, tc.hr) {
				t.Errorf("kept %v, want the report", kept)
			}
			if tc.wantCode != "" && kept != nil {
				t.Errorf("a refused report was kept: %v", kept)
			}
		})
	}
}

// TestMetricsReportKept: a drone's metrics report is kept under its own
// identity; one out of bounds is refused and not kept.
func TestMetricsReportKept(t *testing.T) {
	drone := pki.Identity{Kind: pki.KindDrone, ID: "cln-a", Cluster: "cl-1"}
	now := timestamppb.Now()
	many := make([]*streamv1.MonitorValue, 51)
	for i := range many {
		many[i] = &streamv1.MonitorValue{Key: fmt.Sprint("k", i)}
	}
	for _, tc := range []struct {
		name     string
		mr       *streamv1.MetricsReport
		wantCode string
		wantMsg  string
	}{
		{"host and items", &streamv1.MetricsReport{At: now, CpuPercent: 12.5, Items: []*streamv1.MonitorValue{{Key: "keys", Value: 3}}}, "", ""},
		{"no time", &streamv1.MetricsReport{CpuPercent: 1}, streamrpc.CodeInvalid, "at: "},
		{"too many items", &streamv1.MetricsReport{At: now, Items: many}, streamrpc.CodeInvalid, "items: 51; at most 50"},
		{"item without key", &streamv1.MetricsReport{At: now, Items: []*streamv1.MonitorValue{{Value: 1}}}, streamrpc.CodeInvalid, "items[0]: key empty"},
		{"error too long", &streamv1.MetricsReport{At: now, MonitorError: strings.Repeat("x", 2000)}, streamrpc.CodeInvalid, "monitor_error: 2000 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &fakeDrones{}
			h, err := New(Config{Metadata: &fakeMeta{}, Drones: d, Access: &fakeAccess{}, Pilot: &fakePilot{}, Observe: (&observed{}).observe})
			if err != nil {
				t.Fatal(err)
			}
			req := &streamv1.Request{Body: &streamv1.Request_MetricsReport{MetricsReport: tc.mr}}
			checkResp(t, h.ServeDrone(ctxFor(t, time.Second), drone, req), tc.wantCode, tc.wantMsg)
			kept := d.metrics["cln-a"]
			if tc.wantCode == "" && !proto.Equal(kept, tc.mr) {
				t.Errorf("kept %v, want the report", kept)
			}
			if tc.wantCode != "" && kept != nil {
				t.Errorf("a refused report was kept: %v", kept)
			}
		})
	}
}
