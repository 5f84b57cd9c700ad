package api

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/hangarhq/hangar/pilot/gateway"
)

// newGateway serves pilot's REST gateway (pilot/gateway, as pilot serves
// it) in front of h's gRPC server.
func newGateway(t *testing.T, h *harness) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	gw, err := gateway.New(ctx, gateway.Config{
		GRPCAddr:    h.addr,
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
		Authenticate: func(r *http.Request) error {
			_, err := h.users.AuthenticateHTTP(r)
			return err
		},
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	// Registered first, run last: the HTTP server stops before the
	// gateway's connections close.
	t.Cleanup(cancel)
	t.Cleanup(srv.Close)
	return srv.URL
}

var pathParam = regexp.MustCompile(`\{([a-z_]+)\}`)

// restCall is the HTTP request the gateway maps to method with req: verb,
// path with req's fields filled in, body when the rule takes one.
func restCall(method string, req proto.Message) (verb, path string, body []byte, ok bool, err error) {
	md, err := methodDescriptor(method)
	if err != nil {
		return "", "", nil, false, err
	}
	rule, _ := proto.GetExtension(md.Options(), annotations.E_Http).(*annotations.HttpRule)
	if rule == nil {
		return "", "", nil, false, nil
	}
	switch p := rule.Pattern.(type) {
	case *annotations.HttpRule_Get:
		verb, path = http.MethodGet, p.Get
	case *annotations.HttpRule_Post:
		verb, path = http.MethodPost, p.Post
	case *annotations.HttpRule_Put:
		verb, path = http.MethodPut, p.Put
	case *annotations.HttpRule_Delete:
		verb, path = http.MethodDelete, p.Delete
	default:
		return "", "", nil, false, fmt.Errorf("%s: unexpected http rule %v", method, rule)
	}
	r := req.ProtoReflect()
	path = pathParam.ReplaceAllStringFunc(path, func(m string) string {
		f := r.Descriptor().Fields().ByName(protoreflect.Name(m[1 : len(m)-1]))
		if f == nil {
			return m
		}
		return r.Get(f).String()
	})
	if rule.Body == "*" {
		body, err = protojson.Marshal(req)
	}
	return verb, path, body, true, err
}

func (h *harness) rest(t *testing.T, base, token, verb, path string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(verb, base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRESTKeepsTenantsApart(t *testing.T) {
	h := newHarness(t)
	x := setupAlpha(t, h)
	base := newGateway(t, h)
	betaAdmin := h.tokens[beta+"/admin"]
	alphaViewer := h.tokens[alpha+"/viewer"]

	for _, c := range methodTable() {
		if c.kind == noToken {
			continue
		}
		verb, path, body, ok, err := restCall(c.method, c.req(x))
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			continue
		}
		if code, resp := h.rest(t, base, "", verb, path, body); code != http.StatusUnauthorized || !strings.Contains(resp, "HANGAR_TOKEN") {
			t.Errorf("%s %s without a token: %d %s, want 401", verb, path, code, resp)
		}
		if c.least > viewer {
			if code, _ := h.rest(t, base, alphaViewer, verb, path, body); code != http.StatusForbidden {
				t.Errorf("%s %s as a viewer: %d, want 403", verb, path, code)
			}
		}
		code, resp := h.rest(t, base, betaAdmin, verb, path, body)
		switch c.kind {
		case onObject:
			if code != http.StatusNotFound {
				t.Errorf("%s %s as %s: %d %s, want 404", verb, path, beta, code, resp)
			}
		case listing, self:
			if code != http.StatusOK {
				t.Errorf("%s %s as %s: %d %s, want 200", verb, path, beta, code, resp)
			}
		case platform:
			if code != http.StatusForbidden {
				t.Errorf("%s %s as %s: %d, want 403", verb, path, beta, code)
			}
		}
		// A refusal may repeat the id asked for; an answer holds nothing of alpha's.
		for _, s := range []string{alpha, x.cl1, x.cl2, x.cl3, x.job1, x.job2, x.job3} {
			if code == http.StatusOK && strings.Contains(resp, s) {
				t.Errorf("%s %s as %s shows %q: %s", verb, path, beta, s, resp)
			}
		}
	}

	// The owner reads and deletes over REST.
	member := h.tokens[alpha+"/member"]
	for _, tc := range []struct {
		verb, path string
		want       int
		holds      string
	}{
		{http.MethodGet, "/v1/apps", http.StatusOK, `"name":"kv"`},
		{http.MethodGet, "/v1/apps/kv", http.StatusOK, alpha},
		{http.MethodGet, "/v1/clusters", http.StatusOK, x.cl1},
		{http.MethodGet, "/v1/clusters/" + x.cl1, http.StatusOK, x.cl1},
		{http.MethodDelete, "/v1/clusters/" + x.cl2, http.StatusOK, "CLUSTER_STATUS_DELETING"},
		{http.MethodGet, "/v1/whoami", http.StatusOK, `"name":"member"`},
	} {
		code, resp := h.rest(t, base, member, tc.verb, tc.path, nil)
		if code != tc.want || !strings.Contains(resp, tc.holds) {
			t.Errorf("%s %s as %s's member: %d %s, want %d holding %q", tc.verb, tc.path, alpha, code, resp, tc.want, tc.holds)
		}
	}
	// And the other tenant cannot delete what it cannot see.
	if code, _ := h.rest(t, base, betaAdmin, http.MethodDelete, "/v1/clusters/"+x.cl1, nil); code != http.StatusNotFound {
		t.Errorf("DELETE another tenant's cluster: %d, want 404", code)
	}
}
