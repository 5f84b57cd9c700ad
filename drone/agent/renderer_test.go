package agent

import (
	"bytes"
	"crypto/ed25519"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/cmdsign"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/seal"
	"github.com/hangarhq/hangar/internal/streamrpc"
	"github.com/hangarhq/hangar/internal/testca"
)

// signRendererWith signs cr as pilot does, giving it pilot's expiry unless
// it has one.
func signRendererWith(t *testing.T, key ed25519.PrivateKey, cr *streamv1.ConfigureRenderer) *streamv1.Request {
	t.Helper()
	if cr.ExpiresAt == nil {
		cr.ExpiresAt = timestamppb.New(time.Now().Add(cmdsign.RendererLifetime))
	}
	if err := cmdsign.SignRenderer(key, cr); err != nil {
		t.Fatal(err)
	}
	return &streamv1.Request{Body: &streamv1.Request_ConfigureRenderer{ConfigureRenderer: cr}}
}

// signedRenderer signs cr with the command key the drone trusts.
func (d *drone) signedRenderer(t *testing.T, cr *streamv1.ConfigureRenderer) *streamv1.Request {
	t.Helper()
	return signRendererWith(t, d.cmdKey, cr)
}

// A renderer configuration makes the drone write files and run the toml's
// check and reload commands, so one that pilot did not sign for this node —
// or that was changed after it signed — installs nothing.
func TestRendererConfigurationMustBeSignedByPilot(t *testing.T) {
	ca := testca.New(t)
	fg := startFrontgate(t, ca, ca)
	logs := &logBuffer{}
	d := startDrone(t, ca, fg.addr, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(logs, nil)) })
	c := fg.next(t)

	evil := map[string][]byte{
		"conf.d/x.toml":    []byte("[template]\nsrc = \"x.tmpl\"\ndest = \"/tmp/x\"\ncheck_cmd = \"id > /tmp/pwned\"\nreload_cmd = \"id > /tmp/pwned\"\n"),
		"templates/x.tmpl": []byte("x"),
	}
	cfg := func() *streamv1.ConfigureRenderer {
		return &streamv1.ConfigureRenderer{NodeId: "cln-1", ClusterId: "cl-1", Files: map[string][]byte{"conf.d/x.toml": []byte("reload_cmd = \"true\"")}}
	}
	tampered := d.signedRenderer(t, cfg())
	tampered.GetConfigureRenderer().Files = evil
	expired := cfg()
	expired.ExpiresAt = timestamppb.New(time.Now().Add(-time.Second))
	for _, tc := range []struct {
		name string
		req  *streamv1.Request
		want string
	}{
		{"unsigned", &streamv1.Request{Body: &streamv1.Request_ConfigureRenderer{ConfigureRenderer: &streamv1.ConfigureRenderer{NodeId: "cln-1", ClusterId: "cl-1", Files: evil}}}, "not signed"},
		{"files replaced after signing", tampered, "signature is not valid"},
		{"signed by another key", signRendererWith(t, newCommandKey(t), &streamv1.ConfigureRenderer{NodeId: "cln-1", ClusterId: "cl-1", Files: evil}), "signature is not valid"},
		{"signed for another node", d.signedRenderer(t, &streamv1.ConfigureRenderer{NodeId: "cln-2", ClusterId: "cl-1", Files: evil}), "cln-2"},
		{"expired", d.signedRenderer(t, expired), "expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := call(t, c.peer, tc.req)
			if !streamrpc.IsCode(err, streamrpc.CodeUnauthenticated) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %s naming %q", err, streamrpc.CodeUnauthenticated, tc.want)
			}
		})
	}
	d.rend.mu.Lock()
	calls := d.rend.calls
	d.rend.mu.Unlock()
	if calls != 0 {
		t.Fatalf("the renderer was configured %d times by refused requests", calls)
	}
	if !strings.Contains(logs.String(), "renderer configuration rejected") {
		t.Error("refusals are not logged")
	}

	if _, err := call(t, c.peer, d.signedRenderer(t, cfg())); err != nil {
		t.Fatalf("a configuration pilot signed: %v", err)
	}
}

// The metadata key reaches the renderer only when it was sealed to this
// drone's own certificate key for this cluster and node; a key sealed to
// anything else (the frontgate's, another drone's) is answered unavailable
// so that pilot seals again, and nothing is installed.
func TestMetadataKeyIsSealedToTheDrone(t *testing.T) {
	ca := testca.New(t)
	fg := startFrontgate(t, ca, ca)
	d := startDrone(t, ca, fg.addr)
	c := fg.next(t)
	key := bytes.Repeat([]byte{7}, 32)

	box, err := seal.To(d.creds.Key().Public(), seal.MetadataKeyInfo("cl-1", "cln-1"), key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := call(t, c.peer, d.signedRenderer(t, &streamv1.ConfigureRenderer{NodeId: "cln-1", ClusterId: "cl-1", SealedMetadataKey: box})); err != nil {
		t.Fatal(err)
	}
	d.rend.mu.Lock()
	got := d.rend.key
	d.rend.key, d.rend.calls = nil, 0
	d.rend.mu.Unlock()
	if !bytes.Equal(got, key) {
		t.Fatalf("renderer got key %x, want %x", got, key)
	}

	other, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	toOther, _ := seal.To(other.Public(), seal.MetadataKeyInfo("cl-1", "cln-1"), key)
	forOtherNode, _ := seal.To(d.creds.Key().Public(), seal.MetadataKeyInfo("cl-1", "cln-2"), key)
	for name, box := range map[string][]byte{"sealed to another key": toOther, "sealed for another node": forOtherNode} {
		t.Run(name, func(t *testing.T) {
			_, err := call(t, c.peer, d.signedRenderer(t, &streamv1.ConfigureRenderer{NodeId: "cln-1", ClusterId: "cl-1", SealedMetadataKey: box}))
			if !streamrpc.IsCode(err, streamrpc.CodeUnavailable) || !strings.Contains(err.Error(), "sealed_metadata_key") {
				t.Fatalf("got %v, want unavailable naming sealed_metadata_key", err)
			}
		})
	}
	d.rend.mu.Lock()
	defer d.rend.mu.Unlock()
	if d.rend.calls != 0 {
		t.Fatal("the renderer was configured with a key that did not open")
	}
}

// Pilot's CA certifies every frontgate, and the address alone does not say
// which: a server presenting another frontgate's certificate (a revoked one,
// or one that held this address before) is never given the drone's stream.
func TestRefusesAnotherFrontgatesCertificate(t *testing.T) {
	ca := testca.New(t)
	fg := startFrontgate(t, ca, ca)
	px := startProxy(t, fg.addr)
	startDrone(t, ca, px.addr(), func(c *Config) { c.FrontgateID = "fg-other" })
	deadline := time.After(10 * time.Second)
	for {
		select {
		case c := <-fg.conns:
			t.Fatalf("the drone connected to frontgate fg-1 while its user data names fg-other (hello %v)", c.hello)
		case <-deadline:
			t.Fatal("the drone stopped trying to connect")
		case <-time.After(20 * time.Millisecond):
		}
		px.mu.Lock()
		n := px.attempts
		px.mu.Unlock()
		// Each attempt ends at the TLS handshake; three show it retries
		// without ever opening the stream.
		if n >= 3 {
			return
		}
	}
}
