package conformance

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/hangarhq/hangar/api/providerv1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// memProvider is a minimal correct provider kept in memory. With
// ignoreTokens it creates a new instance on every RunInstance, which the
// suite must catch.
type memProvider struct {
	providerv1.UnimplementedProviderServer
	ignoreTokens bool

	mu        sync.Mutex
	next      int
	networks  map[string]*providerv1.Network
	instances map[string]*providerv1.Instance
	tokens    map[string]string
}

func newMem(ignoreTokens bool) *memProvider {
	return &memProvider{
		ignoreTokens: ignoreTokens,
		networks:     map[string]*providerv1.Network{},
		instances:    map[string]*providerv1.Instance{},
		tokens:       map[string]string{},
	}
}

func (m *memProvider) Info(context.Context, *providerv1.InfoRequest) (*providerv1.InfoResponse, error) {
	return &providerv1.InfoResponse{Name: "mem", Version: "1"}, nil
}

func (m *memProvider) ValidateRuntime(context.Context, *providerv1.ValidateRuntimeRequest) (*providerv1.ValidateRuntimeResponse, error) {
	return &providerv1.ValidateRuntimeResponse{Zones: []string{"mem"}}, nil
}

func (m *memProvider) CreateNetwork(_ context.Context, req *providerv1.CreateNetworkRequest) (*providerv1.Network, error) {
	if req.GetIdempotencyToken() == "" {
		return nil, status.Error(codes.InvalidArgument, "idempotency_token is required")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if id, ok := m.tokens["n/"+req.GetIdempotencyToken()]; ok {
		return m.networks[id], nil
	}
	m.next++
	n := &providerv1.Network{Id: fmt.Sprintf("net-%d", m.next), Name: req.GetName(), Cidr: fmt.Sprintf("10.%d.0.0/24", m.next)}
	m.networks[n.Id] = n
	m.tokens["n/"+req.GetIdempotencyToken()] = n.Id
	return n, nil
}

func (m *memProvider) GetNetwork(_ context.Context, req *providerv1.GetNetworkRequest) (*providerv1.Network, error) {
	if req.GetNetworkId() == "" {
		return nil, status.Error(codes.InvalidArgument, "network_id is required")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.networks[req.GetNetworkId()]
	if !ok {
		return nil, status.Error(codes.NotFound, "no such network")
	}
	return n, nil
}

func (m *memProvider) DeleteNetwork(_ context.Context, req *providerv1.DeleteNetworkRequest) (*providerv1.DeleteNetworkResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, in := range m.instances {
		if in.NetworkId == req.GetNetworkId() {
			return nil, status.Error(codes.FailedPrecondition, "network in use")
		}
	}
	delete(m.networks, req.GetNetworkId())
	return &providerv1.DeleteNetworkResponse{}, nil
}

func (m *memProvider) RunInstance(_ context.Context, req *providerv1.RunInstanceRequest) (*providerv1.Instance, error) {
	if req.GetIdempotencyToken() == "" || req.GetNetworkId() == "" {
		return nil, status.Error(codes.InvalidArgument, "idempotency_token and network_id are required")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if id, ok := m.tokens["i/"+req.GetIdempotencyToken()]; ok && !m.ignoreTokens {
		return m.instances[id], nil
	}
	if _, ok := m.networks[req.GetNetworkId()]; !ok {
		return nil, status.Error(codes.NotFound, "no such network")
	}
	m.next++
	in := &providerv1.Instance{
		Id: fmt.Sprintf("i-%d", m.next), NetworkId: req.GetNetworkId(), Name: req.GetName(),
		Address: fmt.Sprintf("10.0.0.%d", m.next), Image: req.GetImage(),
		State: providerv1.InstanceState_INSTANCE_STATE_RUNNING, Labels: req.GetLabels(),
	}
	m.instances[in.Id] = in
	m.tokens["i/"+req.GetIdempotencyToken()] = in.Id
	return in, nil
}

func (m *memProvider) GetInstance(_ context.Context, req *providerv1.GetInstanceRequest) (*providerv1.Instance, error) {
	if req.GetInstanceId() == "" {
		return nil, status.Error(codes.InvalidArgument, "instance_id is required")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	in, ok := m.instances[req.GetInstanceId()]
	if !ok {
		return nil, status.Error(codes.NotFound, "no such instance")
	}
	return in, nil
}

func (m *memProvider) ListInstances(_ context.Context, req *providerv1.ListInstancesRequest) (*providerv1.ListInstancesResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	resp := &providerv1.ListInstancesResponse{}
	for _, in := range m.instances {
		if req.GetNetworkId() == "" || in.NetworkId == req.GetNetworkId() {
			resp.Instances = append(resp.Instances, in)
		}
	}
	return resp, nil
}

func (m *memProvider) DeleteInstance(_ context.Context, req *providerv1.DeleteInstanceRequest) (*providerv1.DeleteInstanceResponse, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.instances, req.GetInstanceId())
	return &providerv1.DeleteInstanceResponse{}, nil
}

// serve runs impl on an in-memory listener and returns a client for it.
func serve(t *testing.T, impl providerv1.ProviderServer) providerv1.ProviderClient {
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	providerv1.RegisterProviderServer(srv, impl)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	conn, err := grpc.NewClient("passthrough:///mem",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Stop()
		<-done
	})
	return providerv1.NewProviderClient(conn)
}

func TestSuitePassesCorrectProvider(t *testing.T) {
	mem := newMem(false)
	Run(t, func(t *testing.T) providerv1.ProviderClient { return serve(t, mem) }, &providerv1.Runtime{Id: "rt"}, "img")
	mem.mu.Lock()
	defer mem.mu.Unlock()
	if len(mem.instances) != 0 || len(mem.networks) != 0 {
		t.Errorf("suite left %d instances and %d networks behind", len(mem.instances), len(mem.networks))
	}
}

// envBroken makes TestSuiteOnBrokenProvider run the suite (in a child
// process: a failing suite must fail its own test binary, not this one).
const envBroken = "HANGAR_CONFORMANCE_BROKEN"

func TestSuiteOnBrokenProvider(t *testing.T) {
	if os.Getenv(envBroken) == "1" {
		Run(t, func(t *testing.T) providerv1.ProviderClient { return serve(t, newMem(true)) }, &providerv1.Runtime{Id: "rt"}, "img")
		return
	}
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestSuiteOnBrokenProvider$", "-test.v")
	cmd.Env = append(os.Environ(), envBroken+"=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("suite passed a provider that ignores idempotency tokens:\n%s", out)
	}
	if !strings.Contains(string(out), "--- FAIL: TestSuiteOnBrokenProvider/RunInstanceIdempotent") {
		t.Errorf("suite did not fail RunInstanceIdempotent:\n%s", out)
	}
}

func TestRunReport(t *testing.T) {
	for _, tc := range []struct {
		name       string
		broken     bool
		wantFailed []string
		notRun     string // a check after the failed gate
	}{
		{name: "correct provider passes"},
		{name: "provider ignoring tokens fails the rule it breaks", broken: true, wantFailed: []string{"RunInstanceIdempotent"}, notRun: "DeleteNetwork"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := newMem(tc.broken)
			var out strings.Builder
			rep := RunReport(t.Context(), serve(t, mem), &providerv1.Runtime{Id: "rt"}, "img", &out)
			var failed []string
			for _, r := range rep.Failed() {
				failed = append(failed, r.Name)
			}
			if fmt.Sprint(failed) != fmt.Sprint(tc.wantFailed) {
				t.Errorf("failed checks %v, want %v\n%s", failed, tc.wantFailed, out.String())
			}
			for _, name := range tc.wantFailed {
				if !strings.Contains(out.String(), "FAIL    "+name) || !strings.Contains(out.String(), Rule(name)) {
					t.Errorf("report does not name failed %s and its rule %q:\n%s", name, Rule(name), out.String())
				}
			}
			for _, r := range rep.Results {
				if r.Name == tc.notRun && r.Status != statusNotRun {
					t.Errorf("%s ran (%s) after a failed gate", r.Name, r.Status)
				}
			}
			mem.mu.Lock()
			defer mem.mu.Unlock()
			if len(mem.instances) != 0 || len(mem.networks) != 0 {
				t.Errorf("the report runner left %d instances and %d networks", len(mem.instances), len(mem.networks))
			}
		})
	}
}
