package cmdsign

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
)

func renderer() *streamv1.ConfigureRenderer {
	return &streamv1.ConfigureRenderer{
		NodeId:    "cln-a-n1",
		ClusterId: "cl-a",
		Files: map[string][]byte{
			"conf.d/app.toml":    []byte("[template]\nsrc = \"app.tmpl\"\ndest = \"/etc/app.conf\"\nreload_cmd = \"true\"\n"),
			"templates/app.tmpl": []byte("port = {{getv \"/env/port\"}}\n"),
		},
		SealedMetadataKey: []byte("sealed-box"),
		ExpiresAt:         timestamppb.New(now.Add(RendererLifetime)),
	}
}

// Every field of a renderer configuration is covered: changing any of
// them after signing, or moving the request elsewhere, is refused.
func TestVerifyRenderer(t *testing.T) {
	priv := newKey(t)
	pub := priv.Public().(ed25519.PublicKey)
	signed := func(t *testing.T, edit func(*streamv1.ConfigureRenderer)) *streamv1.ConfigureRenderer {
		cr := renderer()
		if err := SignRenderer(priv, cr); err != nil {
			t.Fatal(err)
		}
		if edit != nil {
			edit(cr)
		}
		return cr
	}
	tests := []struct {
		name    string
		cr      func(t *testing.T) *streamv1.ConfigureRenderer
		node    string
		cluster string
		now     time.Time
		want    error
	}{
		{"valid", func(t *testing.T) *streamv1.ConfigureRenderer { return signed(t, nil) }, "cln-a-n1", "cl-a", now, nil},
		{"unsigned", func(t *testing.T) *streamv1.ConfigureRenderer { return renderer() }, "cln-a-n1", "cl-a", now, ErrMissingSignature},
		{"reload command changed", func(t *testing.T) *streamv1.ConfigureRenderer {
			return signed(t, func(cr *streamv1.ConfigureRenderer) {
				cr.Files["conf.d/app.toml"] = []byte("[template]\nsrc = \"app.tmpl\"\ndest = \"/etc/app.conf\"\nreload_cmd = \"id > /tmp/x\"\n")
			})
		}, "cln-a-n1", "cl-a", now, ErrBadSignature},
		{"file added", func(t *testing.T) *streamv1.ConfigureRenderer {
			return signed(t, func(cr *streamv1.ConfigureRenderer) { cr.Files["conf.d/evil.toml"] = []byte("x") })
		}, "cln-a-n1", "cl-a", now, ErrBadSignature},
		{"file removed", func(t *testing.T) *streamv1.ConfigureRenderer {
			return signed(t, func(cr *streamv1.ConfigureRenderer) { delete(cr.Files, "templates/app.tmpl") })
		}, "cln-a-n1", "cl-a", now, ErrBadSignature},
		{"file renamed", func(t *testing.T) *streamv1.ConfigureRenderer {
			return signed(t, func(cr *streamv1.ConfigureRenderer) {
				cr.Files["templates/other.tmpl"] = cr.Files["templates/app.tmpl"]
				delete(cr.Files, "templates/app.tmpl")
			})
		}, "cln-a-n1", "cl-a", now, ErrBadSignature},
		{"key swapped", func(t *testing.T) *streamv1.ConfigureRenderer {
			return signed(t, func(cr *streamv1.ConfigureRenderer) { cr.SealedMetadataKey = []byte("another box") })
		}, "cln-a-n1", "cl-a", now, ErrBadSignature},
		{"key dropped", func(t *testing.T) *streamv1.ConfigureRenderer {
			return signed(t, func(cr *streamv1.ConfigureRenderer) { cr.SealedMetadataKey = nil })
		}, "cln-a-n1", "cl-a", now, ErrBadSignature},
		{"health check added", func(t *testing.T) *streamv1.ConfigureRenderer {
			return signed(t, func(cr *streamv1.ConfigureRenderer) {
				cr.HealthCheck = &streamv1.HealthCheck{CheckCmd: "true", IntervalSec: 1, TimeoutSec: 1, HealthyThreshold: 1, UnhealthyThreshold: 1}
			})
		}, "cln-a-n1", "cl-a", now, ErrBadSignature},
		{"health check's action changed", func(t *testing.T) *streamv1.ConfigureRenderer {
			cr := renderer()
			cr.HealthCheck = &streamv1.HealthCheck{CheckCmd: "true", ActionCmd: "restart", IntervalSec: 1, TimeoutSec: 1, ActionTimeoutSec: 5, HealthyThreshold: 1, UnhealthyThreshold: 1}
			if err := SignRenderer(priv, cr); err != nil {
				t.Fatal(err)
			}
			if err := VerifyRenderer(pub, cr, "cln-a-n1", "cl-a", now); err != nil {
				t.Fatalf("signed with a health check: %v", err)
			}
			cr.HealthCheck.ActionCmd = "id > /tmp/x"
			return cr
		}, "cln-a-n1", "cl-a", now, ErrBadSignature},
		{"health check's threshold changed", func(t *testing.T) *streamv1.ConfigureRenderer {
			cr := renderer()
			cr.HealthCheck = &streamv1.HealthCheck{CheckCmd: "true", IntervalSec: 1, TimeoutSec: 1, HealthyThreshold: 1, UnhealthyThreshold: 3}
			if err := SignRenderer(priv, cr); err != nil {
				t.Fatal(err)
			}
			cr.HealthCheck.UnhealthyThreshold = 30
			return cr
		}, "cln-a-n1", "cl-a", now, ErrBadSignature},
		{"monitor added", func(t *testing.T) *streamv1.ConfigureRenderer {
			return signed(t, func(cr *streamv1.ConfigureRenderer) { cr.Monitor = testMonitor() })
		}, "cln-a-n1", "cl-a", now, ErrBadSignature},
		{"monitor signed", func(t *testing.T) *streamv1.ConfigureRenderer {
			return signedWith(t, priv, nil)
		}, "cln-a-n1", "cl-a", now, nil},
		{"monitor's cmd changed", func(t *testing.T) *streamv1.ConfigureRenderer {
			return signedWith(t, priv, func(m *streamv1.Monitor) { m.Cmd = "id > /tmp/x" })
		}, "cln-a-n1", "cl-a", now, ErrBadSignature},
		{"monitor's interval changed", func(t *testing.T) *streamv1.ConfigureRenderer {
			return signedWith(t, priv, func(m *streamv1.Monitor) { m.IntervalSec = 1 })
		}, "cln-a-n1", "cl-a", now, ErrBadSignature},
		{"monitor item's statistics changed", func(t *testing.T) *streamv1.ConfigureRenderer {
			return signedWith(t, priv, func(m *streamv1.Monitor) { m.Items[0].StatisticsType = "rate" })
		}, "cln-a-n1", "cl-a", now, ErrBadSignature},
		{"monitor item added", func(t *testing.T) *streamv1.ConfigureRenderer {
			return signedWith(t, priv, func(m *streamv1.Monitor) {
				m.Items = append(m.Items, &streamv1.MonitorItemSpec{Key: "z", ValueType: "int", StatisticsType: "latest"})
			})
		}, "cln-a-n1", "cl-a", now, ErrBadSignature},
		{"monitor enum changed", func(t *testing.T) *streamv1.ConfigureRenderer {
			return signedWith(t, priv, func(m *streamv1.Monitor) { m.Items[1].Enums[0] = "down" })
		}, "cln-a-n1", "cl-a", now, ErrBadSignature},
		{"monitor dropped", func(t *testing.T) *streamv1.ConfigureRenderer {
			return signedWith(t, priv, func(m *streamv1.Monitor) { *m = streamv1.Monitor{} })
		}, "cln-a-n1", "cl-a", now, ErrBadSignature},
		{"expiry extended", func(t *testing.T) *streamv1.ConfigureRenderer {
			return signed(t, func(cr *streamv1.ConfigureRenderer) { cr.ExpiresAt = timestamppb.New(now.Add(time.Hour)) })
		}, "cln-a-n1", "cl-a", now, ErrBadSignature},
		{"redirected to another node", func(t *testing.T) *streamv1.ConfigureRenderer {
			return signed(t, func(cr *streamv1.ConfigureRenderer) { cr.NodeId = "cln-a-n2" })
		}, "cln-a-n2", "cl-a", now, ErrBadSignature},
		{"sent to another node", func(t *testing.T) *streamv1.ConfigureRenderer { return signed(t, nil) }, "cln-a-n2", "cl-a", now, ErrWrongTarget},
		{"sent to another cluster", func(t *testing.T) *streamv1.ConfigureRenderer { return signed(t, nil) }, "cln-a-n1", "cl-b", now, ErrWrongTarget},
		{"expired", func(t *testing.T) *streamv1.ConfigureRenderer { return signed(t, nil) }, "cln-a-n1", "cl-a", now.Add(RendererLifetime), ErrExpired},
		{"no expiry", func(t *testing.T) *streamv1.ConfigureRenderer {
			return signed(t, func(cr *streamv1.ConfigureRenderer) { cr.ExpiresAt = nil })
		}, "cln-a-n1", "cl-a", now, ErrBadSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyRenderer(pub, tc.cr(t), tc.node, tc.cluster, tc.now)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("VerifyRenderer: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("VerifyRenderer: %v, want %v", err, tc.want)
			}
		})
	}
}

// A command's signature never verifies a renderer configuration (and the
// reverse), whatever the fields: the prefixes differ.
func TestKindsAreSeparate(t *testing.T) {
	a, err := Canonical(command())
	if err != nil {
		t.Fatal(err)
	}
	b, err := CanonicalRenderer(renderer())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.HasPrefix(a, []byte(RendererPrefix)) || bytes.HasPrefix(b, []byte(Prefix)) {
		t.Fatal("kinds share a prefix")
	}
}

// The signature survives the wire: map order after a marshal round trip
// does not matter.
func TestVerifyRendererAfterMarshal(t *testing.T) {
	priv := newKey(t)
	cr := renderer()
	for i := range 20 {
		cr.Files["templates/f"+string(rune('a'+i))+".tmpl"] = []byte{byte(i)}
	}
	if err := SignRenderer(priv, cr); err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(&streamv1.Request{Body: &streamv1.Request_ConfigureRenderer{ConfigureRenderer: cr}})
	if err != nil {
		t.Fatal(err)
	}
	var req streamv1.Request
	if err := proto.Unmarshal(b, &req); err != nil {
		t.Fatal(err)
	}
	if err := VerifyRenderer(priv.Public().(ed25519.PublicKey), req.GetConfigureRenderer(), "cln-a-n1", "cl-a", now); err != nil {
		t.Fatalf("after a marshal round trip: %v", err)
	}
}

// The documented layout, byte for byte.
func TestCanonicalRendererLayout(t *testing.T) {
	cr := &streamv1.ConfigureRenderer{
		NodeId:            "n1",
		ClusterId:         "c1",
		Files:             map[string][]byte{"b": []byte("2"), "a": []byte("1")},
		SealedMetadataKey: []byte("k"),
		ExpiresAt:         timestamppb.New(time.Date(2031, 5, 4, 10, 0, 0, 0, time.UTC)),
	}
	got, err := CanonicalRenderer(cr)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	want.WriteString("hangar-renderer-v1\n")
	for _, f := range []string{"n1", "c1", "2", "a", "1", "b", "2", "k", "2031-05-04T10:00:00Z"} {
		want.Write([]byte{0, 0, 0, 0, 0, 0, 0, byte(len(f))})
		want.WriteString(f)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("CanonicalRenderer:\n got %q\nwant %q", got, want.Bytes())
	}
}

func testMonitor() *streamv1.Monitor {
	return &streamv1.Monitor{Cmd: "kv monitor", IntervalSec: 10, Items: []*streamv1.MonitorItemSpec{
		{Key: "keys", ValueType: "int", StatisticsType: "latest"},
		{Key: "state", ValueType: "str", StatisticsType: "latest", Enums: []string{"up", "syncing"}},
	}}
}

// signedWith is a renderer with testMonitor, signed, then edited by edit
// (nil: left as signed).
func signedWith(t *testing.T, priv ed25519.PrivateKey, edit func(*streamv1.Monitor)) *streamv1.ConfigureRenderer {
	t.Helper()
	cr := renderer()
	cr.Monitor = testMonitor()
	if err := SignRenderer(priv, cr); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(cr.Monitor)
	}
	return cr
}

// A renderer without a monitor (or health check) signs exactly the bytes
// it signed before those fields existed, so that drones of the release
// before verify it; with one, the monitor's fields follow the layout.
func TestCanonicalRendererMonitor(t *testing.T) {
	cr := renderer()
	before, err := CanonicalRenderer(cr)
	if err != nil {
		t.Fatal(err)
	}
	cr.Monitor = &streamv1.Monitor{Cmd: "m", IntervalSec: 5, Items: []*streamv1.MonitorItemSpec{{Key: "k", ValueType: "str", StatisticsType: "mode", Enums: []string{"a"}}}}
	after, err := CanonicalRenderer(cr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(after, before) {
		t.Fatal("a monitor changes the bytes before its own")
	}
	var want bytes.Buffer
	for _, f := range []string{"monitor", "m", "5", "1", "k", "str", "mode", "1", "a"} {
		want.Write([]byte{0, 0, 0, 0, 0, 0, 0, byte(len(f))})
		want.WriteString(f)
	}
	if got := after[len(before):]; !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("monitor's bytes:\n got %q\nwant %q", got, want.Bytes())
	}
}
