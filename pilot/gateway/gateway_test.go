package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// backend is a gRPC API that answers what it was asked, counting calls.
type backend struct {
	pilotv1.UnimplementedAppServiceServer
	pilotv1.UnimplementedClusterServiceServer
	pilotv1.UnimplementedJobServiceServer
	calls atomic.Int32
}

func (b *backend) PushApp(_ context.Context, req *pilotv1.PushAppRequest) (*pilotv1.App, error) {
	b.calls.Add(1)
	return &pilotv1.App{Name: "pushed", Description: string(req.Archive)}, nil
}

func (b *backend) GetCluster(_ context.Context, req *pilotv1.GetClusterRequest) (*pilotv1.Cluster, error) {
	b.calls.Add(1)
	return &pilotv1.Cluster{Id: req.Id}, nil
}

func (b *backend) ListJobs(context.Context, *pilotv1.ListJobsRequest) (*pilotv1.ListJobsResponse, error) {
	b.calls.Add(1)
	return &pilotv1.ListJobsResponse{}, nil
}

func (b *backend) WatchJob(req *pilotv1.WatchJobRequest, st grpc.ServerStreamingServer[pilotv1.Job]) error {
	b.calls.Add(1)
	return st.Send(&pilotv1.Job{Id: req.Id})
}

const (
	goodToken = "Bearer good"
	// etcdDown stands for a token pilot cannot check right now.
	etcdDown     = "Bearer while-etcd-is-down"
	unauthorized = "missing or invalid API token; pass --token or set HANGAR_TOKEN"
	cannotCheck  = "pilot cannot check API tokens right now; try again"
)

func authenticate(r *http.Request) error {
	switch r.Header.Get("Authorization") {
	case goodToken:
		return nil
	case etcdDown:
		return status.Error(codes.Unavailable, cannotCheck)
	}
	return status.Error(codes.Unauthenticated, unauthorized)
}

// serve runs the gateway, with a body cap of maxBody, in front of a
// backend.
func serve(t *testing.T, maxBody int64) (string, *Gateway, *backend) {
	t.Helper()
	b := &backend{}
	gs := grpc.NewServer()
	pilotv1.RegisterAppServiceServer(gs, b)
	pilotv1.RegisterClusterServiceServer(gs, b)
	pilotv1.RegisterJobServiceServer(gs, b)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(lis) }()
	ctx, cancel := context.WithCancel(context.Background())
	g, err := New(ctx, Config{
		GRPCAddr:     lis.Addr().String(),
		DialOptions:  []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
		Authenticate: authenticate,
		MaxBodyBytes: maxBody,
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(func() {
		srv.Close()
		cancel()
		gs.Stop()
		<-done
	})
	return srv.URL, g, b
}

// countingBody is an endless request body that counts what was read.
type countingBody struct{ n atomic.Int64 }

func (c *countingBody) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	c.n.Add(int64(len(p)))
	return len(p), nil
}

// apiError is the gateway's error body.
type apiError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func do(t *testing.T, req *http.Request) (int, apiError, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e apiError
	_ = json.Unmarshal(b, &e)
	return resp.StatusCode, e, string(b)
}

func pushBody(t *testing.T, archive string) []byte {
	t.Helper()
	b, err := protojson.Marshal(&pilotv1.PushAppRequest{Archive: []byte(archive)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A request without a valid token is answered before its body is read,
// in the gRPC API's words; pilot's own trouble checking is a 503.
func TestAuthenticatesBeforeReadingTheBody(t *testing.T) {
	url, g, b := serve(t, 1<<20)
	for _, tc := range []struct {
		name    string
		auth    string
		code    int
		message string
	}{
		{"no token", "", http.StatusUnauthorized, unauthorized},
		{"a bad token", "Bearer hgt_wrong", http.StatusUnauthorized, unauthorized},
		{"tokens cannot be checked", etcdDown, http.StatusServiceUnavailable, cannotCheck},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := &countingBody{}
			// Endless: reading it all would never end.
			req := httptest.NewRequest(http.MethodPost, "/v1/apps", body)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			rec := httptest.NewRecorder()
			g.ServeHTTP(rec, req)
			var e apiError
			_ = json.Unmarshal(rec.Body.Bytes(), &e)
			// The message is the one Authenticate gave, as the gRPC API words it.
			if rec.Code != tc.code || e.Message != tc.message {
				t.Fatalf("%d %s, want %d saying %q", rec.Code, rec.Body, tc.code, tc.message)
			}
			if n := body.n.Load(); n != 0 {
				t.Fatalf("%d bytes of the body were read before the refusal", n)
			}
		})
	}
	if n := b.calls.Load(); n != 0 {
		t.Fatalf("the backend was called %d times", n)
	}
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/apps", bytes.NewReader(pushBody(t, "tgz")))
	req.Header.Set("Authorization", goodToken)
	if code, _, raw := do(t, req); code != http.StatusOK || !strings.Contains(raw, "pushed") {
		t.Fatalf("with a token: %d %s", code, raw)
	}
}

func TestBodyCap(t *testing.T) {
	const maxBody = 4096
	url, _, b := serve(t, maxBody)
	atCap := pushBody(t, strings.Repeat("x", 2000))
	atCap = append(atCap, bytes.Repeat([]byte(" "), maxBody-len(atCap))...)
	// The smallest push whose JSON crosses the cap (base64 grows in steps
	// of 4).
	over := pushBody(t, strings.Repeat("x", 3*(maxBody/4)))
	if len(over) <= maxBody || len(over) > maxBody+64 {
		t.Fatalf("the over-the-cap body is %d bytes", len(over))
	}
	for _, tc := range []struct {
		name    string
		body    io.Reader
		length  int64 // -1: chunked
		code    int
		backend bool
	}{
		{"at the cap", bytes.NewReader(atCap), int64(len(atCap)), http.StatusOK, true},
		{"at the cap, chunked", bytes.NewReader(atCap), -1, http.StatusOK, true},
		{"just over, by its length", bytes.NewReader(over), int64(len(over)), http.StatusRequestEntityTooLarge, false},
		{"just over, chunked", bytes.NewReader(over), -1, http.StatusRequestEntityTooLarge, false},
		{"endless, chunked", &countingBody{}, -1, http.StatusRequestEntityTooLarge, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := b.calls.Load()
			req, _ := http.NewRequest(http.MethodPost, url+"/v1/apps", tc.body)
			req.ContentLength = tc.length
			req.Header.Set("Authorization", goodToken)
			code, e, raw := do(t, req)
			if code != tc.code {
				t.Fatalf("%d %s, want %d", code, raw, tc.code)
			}
			if code == http.StatusRequestEntityTooLarge && !strings.Contains(e.Message, "over the 4096-byte limit") {
				t.Fatalf("413 says %q; want it to name the limit", e.Message)
			}
			if called := b.calls.Load() > before; called != tc.backend {
				t.Fatalf("backend called: %v, want %v", called, tc.backend)
			}
		})
	}
}

// Strings that are not UTF-8 are the caller's mistake, named by field,
// on every kind of route: path, query, server streaming.
func TestInvalidUTF8IsABadRequest(t *testing.T) {
	url, _, b := serve(t, 1<<20)
	for _, tc := range []struct {
		name, path, field string
	}{
		{"a path parameter", "/v1/clusters/%ff%fe", "id"},
		{"a query parameter", "/v1/jobs?cluster_id=cl-%C3%28", "cluster_id"},
		{"a streaming route", "/v1/jobs/%ff/watch", "id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, url+tc.path, nil)
			req.Header.Set("Authorization", goodToken)
			code, e, raw := do(t, req)
			if code != http.StatusBadRequest || e.Message != tc.field+": not valid UTF-8; every string in a request must be UTF-8 text" {
				t.Fatalf("%d %s, want 400 naming %s", code, raw, tc.field)
			}
		})
	}
	if n := b.calls.Load(); n != 0 {
		t.Fatalf("the backend was called %d times", n)
	}
	req, _ := http.NewRequest(http.MethodGet, url+"/v1/clusters/cl-%C3%A9", nil)
	req.Header.Set("Authorization", goodToken)
	if code, _, raw := do(t, req); code != http.StatusOK || !strings.Contains(raw, "cl-é") {
		t.Fatalf("a valid UTF-8 id: %d %s", code, raw)
	}
}

// A body whose length is declared over the cap is refused unread.
func TestDeclaredOversizeBodyIsNotRead(t *testing.T) {
	_, g, b := serve(t, 4096)
	body := &countingBody{}
	req := httptest.NewRequest(http.MethodPost, "/v1/apps", body)
	req.ContentLength = 200 << 20
	req.Header.Set("Authorization", goodToken)
	rec := httptest.NewRecorder()
	g.ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge || !strings.Contains(rec.Body.String(), "over the 4096-byte limit") {
		t.Fatalf("%d %s, want 413 naming the limit", rec.Code, rec.Body)
	}
	if n := body.n.Load(); n != 0 || b.calls.Load() != 0 {
		t.Fatalf("%d bytes read, %d backend calls; want none", n, b.calls.Load())
	}
}
