package cmdsign

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/pki"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var now = time.Date(2031, 5, 4, 10, 0, 0, 0, time.UTC)

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func command() *streamv1.RunCommand {
	return &streamv1.RunCommand{
		NodeId:         "cln-a-n1",
		CommandId:      "job1.task2.cln-a-n1",
		Cmd:            "echo hello > /tmp/x",
		TimeoutSeconds: 60,
		User:           "root",
		ExpiresAt:      timestamppb.New(ExpiresAt(now, 60)),
	}
}

func TestVerify(t *testing.T) {
	priv := newKey(t)
	pub := priv.Public().(ed25519.PublicKey)
	other := newKey(t)
	signed := func(t *testing.T, k ed25519.PrivateKey, edit func(*streamv1.RunCommand)) *streamv1.RunCommand {
		rc := command()
		if edit != nil {
			edit(rc)
		}
		if err := Sign(k, rc); err != nil {
			t.Fatal(err)
		}
		return rc
	}
	tests := []struct {
		name string
		rc   func(t *testing.T) *streamv1.RunCommand
		pub  ed25519.PublicKey
		now  time.Time
		want error
	}{
		{"valid", func(t *testing.T) *streamv1.RunCommand { return signed(t, priv, nil) }, pub, now, nil},
		{"valid just before expiry", func(t *testing.T) *streamv1.RunCommand { return signed(t, priv, nil) }, pub, ExpiresAt(now, 60).Add(-time.Nanosecond), nil},
		{"missing", func(t *testing.T) *streamv1.RunCommand { return command() }, pub, now, ErrMissingSignature},
		{"flipped bit in cmd", func(t *testing.T) *streamv1.RunCommand {
			rc := signed(t, priv, nil)
			b := []byte(rc.Cmd)
			b[0] ^= 1
			rc.Cmd = string(b)
			return rc
		}, pub, now, ErrBadSignature},
		{"flipped bit in signature", func(t *testing.T) *streamv1.RunCommand {
			rc := signed(t, priv, nil)
			rc.Signature[10] ^= 0x80
			return rc
		}, pub, now, ErrBadSignature},
		{"retargeted after signing", func(t *testing.T) *streamv1.RunCommand {
			rc := signed(t, priv, func(rc *streamv1.RunCommand) { rc.NodeId = "cln-a-n2" })
			rc.NodeId = "cln-a-n1"
			return rc
		}, pub, now, ErrBadSignature},
		{"expiry extended after signing", func(t *testing.T) *streamv1.RunCommand {
			rc := signed(t, priv, nil)
			rc.ExpiresAt = timestamppb.New(now.Add(24 * time.Hour))
			return rc
		}, pub, now.Add(time.Hour), ErrBadSignature},
		{"timeout changed after signing", func(t *testing.T) *streamv1.RunCommand {
			rc := signed(t, priv, nil)
			rc.TimeoutSeconds = 6
			return rc
		}, pub, now, ErrBadSignature},
		{"user changed after signing", func(t *testing.T) *streamv1.RunCommand {
			rc := signed(t, priv, nil)
			rc.User = "nobody"
			return rc
		}, pub, now, ErrBadSignature},
		{"expires_at removed after signing", func(t *testing.T) *streamv1.RunCommand {
			rc := signed(t, priv, nil)
			rc.ExpiresAt = nil
			return rc
		}, pub, now, ErrBadSignature},
		{"truncated signature", func(t *testing.T) *streamv1.RunCommand {
			rc := signed(t, priv, nil)
			rc.Signature = rc.Signature[:40]
			return rc
		}, pub, now, ErrBadSignature},
		{"other node", func(t *testing.T) *streamv1.RunCommand {
			return signed(t, priv, func(rc *streamv1.RunCommand) { rc.NodeId = "cln-a-n2" })
		}, pub, now, ErrWrongTarget},
		{"no node", func(t *testing.T) *streamv1.RunCommand {
			return signed(t, priv, func(rc *streamv1.RunCommand) { rc.NodeId = "" })
		}, pub, now, ErrWrongTarget},
		{"expired", func(t *testing.T) *streamv1.RunCommand { return signed(t, priv, nil) }, pub, ExpiresAt(now, 60), ErrExpired},
		{"long expired", func(t *testing.T) *streamv1.RunCommand { return signed(t, priv, nil) }, pub, now.Add(48 * time.Hour), ErrExpired},
		{"wrong key", func(t *testing.T) *streamv1.RunCommand { return signed(t, other, nil) }, pub, now, ErrBadSignature},
		{"no public key", func(t *testing.T) *streamv1.RunCommand { return signed(t, priv, nil) }, nil, now, ErrBadSignature},
		{"short public key", func(t *testing.T) *streamv1.RunCommand { return signed(t, priv, nil) }, pub[:16], now, ErrBadSignature},
	}
	all := []error{ErrMissingSignature, ErrBadSignature, ErrWrongTarget, ErrExpired}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(tc.pub, tc.rc(t), "cln-a-n1", tc.now)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v, want nil", err)
				}
				return
			}
			for _, e := range all {
				if got := errors.Is(err, e); got != (e == tc.want) {
					t.Fatalf("Verify: %v; errors.Is(%v) = %v", err, e, got)
				}
			}
		})
	}
}

// A command's signature survives the trip through the wire format.
func TestVerifyAfterMarshal(t *testing.T) {
	priv := newKey(t)
	rc := command()
	rc.ExpiresAt = timestamppb.New(now.Add(90*time.Minute + 123456789*time.Nanosecond).In(time.FixedZone("x", 3600)))
	if err := Sign(priv, rc); err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(&streamv1.Request{Body: &streamv1.Request_RunCommand{RunCommand: rc}})
	if err != nil {
		t.Fatal(err)
	}
	var req streamv1.Request
	if err := proto.Unmarshal(b, &req); err != nil {
		t.Fatal(err)
	}
	if err := Verify(priv.Public().(ed25519.PublicKey), req.GetRunCommand(), "cln-a-n1", now); err != nil {
		t.Fatal(err)
	}
}

func TestSignRefuses(t *testing.T) {
	priv := newKey(t)
	noExpiry := command()
	noExpiry.ExpiresAt = nil
	badExpiry := command()
	badExpiry.ExpiresAt = &timestamppb.Timestamp{Seconds: 1, Nanos: 2e9}
	tests := []struct {
		name string
		key  ed25519.PrivateKey
		rc   *streamv1.RunCommand
		want string
	}{
		{"no key", nil, command(), "want an Ed25519 private key"},
		{"no expiry", priv, noExpiry, "expires_at is not set"},
		{"bad expiry", priv, badExpiry, "expires_at"},
		{"no command", priv, nil, "no command"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Sign(tc.key, tc.rc)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Sign: %v, want an error containing %q", err, tc.want)
			}
			if tc.rc != nil && tc.rc.Signature != nil {
				t.Fatal("Sign set a signature although it failed")
			}
		})
	}
}

// The documented encoding, byte for byte: drones of other versions (or
// other languages) must be able to rebuild it.
func TestCanonicalLayout(t *testing.T) {
	rc := &streamv1.RunCommand{
		CommandId:      "c",
		NodeId:         "n1",
		Cmd:            "ls",
		TimeoutSeconds: 600,
		User:           "",
		ExpiresAt:      timestamppb.New(time.Date(2031, 5, 4, 12, 0, 0, 500000000, time.FixedZone("cest", 2*3600))),
	}
	got, err := Canonical(rc)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	want.WriteString("hangar-command-v1\n")
	for _, f := range []string{"c", "n1", "ls", "600", "", "2031-05-04T10:00:00.5Z"} {
		want.Write([]byte{0, 0, 0, 0, 0, 0, 0, byte(len(f))})
		want.WriteString(f)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("Canonical:\n got %q\nwant %q", got, want.Bytes())
	}
}

// Moving bytes between adjacent fields changes the signed bytes.
func TestCanonicalIsUnambiguous(t *testing.T) {
	a := command()
	a.CommandId, a.NodeId = "ab", "c"
	b := command()
	b.CommandId, b.NodeId = "a", "bc"
	ca, err := Canonical(a)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := Canonical(b)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(ca, cb) {
		t.Fatal("different commands have the same canonical bytes")
	}
}

func TestExpiresAt(t *testing.T) {
	for _, tc := range []struct {
		timeout int32
		want    time.Duration
	}{
		{60, time.Minute + ExpiryMargin},
		{0, 10*time.Minute + ExpiryMargin},
		{-5, 10*time.Minute + ExpiryMargin},
		{3600, time.Hour + ExpiryMargin},
	} {
		if got := ExpiresAt(now, tc.timeout).Sub(now); got != tc.want {
			t.Errorf("ExpiresAt(now, %d) = now+%v, want now+%v", tc.timeout, got, tc.want)
		}
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "command.key")
	k, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	again, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !k.Equal(again) {
		t.Fatal("second load returned another key")
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Fatalf("key dir holds %d entries, want only the key (temporary files left?)", len(entries))
	}
}

// Concurrent first starts agree on one key: the one on disk.
func TestLoadOrCreateKeyConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "command.key")
	const n = 8
	keys := make([]ed25519.PrivateKey, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { keys[i], errs[i] = LoadOrCreateKey(path) })
	}
	wg.Wait()
	onDisk, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("creator %d: %v", i, errs[i])
		}
		if !keys[i].Equal(onDisk) {
			t.Fatalf("creator %d got a key that is not the one on disk", i)
		}
	}
}

func TestLoadKeyForms(t *testing.T) {
	k := newKey(t)
	pemKey, err := EncodeKey(k)
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string][]byte{
		"pem":      pemKey,
		"raw 64":   []byte(k),
		"raw seed": k.Seed(),
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "command.key")
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := LoadOrCreateKey(path)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(k) {
				t.Fatal("loaded another key")
			}
		})
	}
}

func TestLoadKeyRefuses(t *testing.T) {
	k := newKey(t)
	pemKey, err := EncodeKey(k)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	ecPEM, err := pki.EncodeKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	mismatched := append([]byte(nil), k...)
	mismatched[40] ^= 1
	tests := []struct {
		name    string
		content []byte
		mode    os.FileMode
		want    string
	}{
		{"readable by others", pemKey, 0o644, "chmod 600"},
		{"readable by group", pemKey, 0o640, "chmod 600"},
		{"garbage", []byte("not a key"), 0o600, "not a PEM PRIVATE KEY"},
		{"empty", nil, 0o600, "0 bytes"},
		{"wrong PEM type", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o600, `"CERTIFICATE"`},
		{"ECDSA key", ecPEM, 0o600, "want Ed25519"},
		{"raw halves disagree", mismatched, 0o600, "does not match"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "command.key")
			if err := os.WriteFile(path, tc.content, tc.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tc.mode); err != nil {
				t.Fatal(err)
			}
			_, err := LoadOrCreateKey(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("LoadOrCreateKey: %v, want an error containing %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name the file", err)
			}
		})
	}
}

func TestLoadKeyNotAFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadOrCreateKey(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("LoadOrCreateKey(dir): %v", err)
	}
}
