package secretbox

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testBox(t *testing.T, fill byte) *Box {
	t.Helper()
	b, err := New(bytes.Repeat([]byte{fill}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSealOpenRoundTrip(t *testing.T) {
	b := testBox(t, 1)
	for _, plain := range []string{"", "s3cret", strings.Repeat("päss", 1000)} {
		s := b.Seal(plain, "cl-1/env.pw")
		if !IsSealed(s) {
			t.Fatalf("Seal gave %q, want prefix %q", s, Prefix)
		}
		if plain != "" && strings.Contains(s, plain) {
			t.Fatalf("sealed value holds the plaintext: %q", s)
		}
		got, err := b.Open(s, "cl-1/env.pw")
		if err != nil || got != plain {
			t.Fatalf("Open = %q, %v; want %q", got, err, plain)
		}
	}
	// A fresh nonce per seal: equal plaintexts must not be recognisable.
	first, second := b.Seal("x", "ad"), b.Seal("x", "ad")
	if first == second {
		t.Fatal("two seals of the same plaintext are equal")
	}
}

func TestOpenRefuses(t *testing.T) {
	b := testBox(t, 1)
	s := b.Seal("s3cret", "cl-1/env.pw")
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, Prefix))
	flip := func(i int) string {
		c := append([]byte(nil), raw...)
		c[i] ^= 1
		return Prefix + base64.StdEncoding.EncodeToString(c)
	}
	tests := []struct {
		name, value, ad string
		box             *Box
		want            string // part of the error; "" means ErrOpen
	}{
		{"tampered ciphertext", flip(len(raw) - 1), "cl-1/env.pw", b, ""},
		{"tampered nonce", flip(0), "cl-1/env.pw", b, ""},
		{"wrong associated data", s, "cl-2/env.pw", b, ""},
		{"wrong key", s, "cl-1/env.pw", testBox(t, 2), ""},
		{"not sealed", "s3cret", "cl-1/env.pw", b, "must start with"},
		{"bad base64", Prefix + "!!!", "cl-1/env.pw", b, "bad base64"},
		{"too short", Prefix + base64.StdEncoding.EncodeToString([]byte("abc")), "cl-1/env.pw", b, "shorter than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.box.Open(tc.value, tc.ad)
			if err == nil {
				t.Fatalf("Open succeeded with %q", got)
			}
			if tc.want == "" && !errors.Is(err, ErrOpen) {
				t.Fatalf("err = %v, want ErrOpen", err)
			}
			if tc.want != "" && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
		})
	}
}

func TestNewRejectsBadKeySize(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33} {
		if _, err := New(make([]byte, n)); err == nil || !strings.Contains(err.Error(), "32 bytes") {
			t.Errorf("New(%d bytes) err = %v, want one naming 32 bytes", n, err)
		}
	}
}

func TestDerive(t *testing.T) {
	master := testBox(t, 1)
	a, err := master.Metadata("cl-a")
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := master.Metadata("cl-a")
	b, _ := master.Metadata("cl-b")
	other, _ := testBox(t, 2).Metadata("cl-a")
	switch {
	case !bytes.Equal(a.Key(), a2.Key()):
		t.Fatal("deriving the same label twice gave different keys")
	case bytes.Equal(a.Key(), b.Key()):
		t.Fatal("clusters cl-a and cl-b got the same metadata key")
	case bytes.Equal(a.Key(), master.Key()):
		t.Fatal("derived key equals the master key")
	case bytes.Equal(a.Key(), other.Key()):
		t.Fatal("different masters derived the same key")
	}
	// A drone holding cl-a's key cannot read cl-b's values.
	s := b.Seal("pw", "/clusters/cl-b/env/pw")
	if _, err := a.Open(s, "/clusters/cl-b/env/pw"); !errors.Is(err, ErrOpen) {
		t.Fatalf("cl-a's key opened cl-b's value: %v", err)
	}
	// The key handed to a drone rebuilds the same box.
	fromKey, err := New(a.Key())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := fromKey.Open(a.Seal("pw", "k"), "k"); err != nil || got != "pw" {
		t.Fatalf("box from Key() Open = %q, %v", got, err)
	}
	if _, err := master.Derive(""); err == nil {
		t.Fatal("Derive accepted an empty label")
	}
}

func TestKeyNeverPrinted(t *testing.T) {
	b := testBox(t, 'k')
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "box", b)
	for _, s := range []string{fmt.Sprintf("%v %s %+v %#v", b, b, b, b), buf.String()} {
		if strings.Contains(s, "kkkk") || strings.Contains(s, base64.StdEncoding.EncodeToString(b.Key())[:8]) {
			t.Fatalf("key printed: %s", s)
		}
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "secret.key")
	k1, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %o, want 600", fi.Mode().Perm())
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o700 {
		t.Fatalf("key folder mode %o, want 700", di.Mode().Perm())
	}
	k2, err := LoadOrCreateKey(path)
	if err != nil || !bytes.Equal(k1, k2) || len(k1) != KeySize {
		t.Fatalf("second load = %x, %v; want the first key %x", k2, err, k1)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("folder holds %d entries, want only the key (no temp files left)", len(entries))
	}

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = LoadOrCreateKey(path)
	if err == nil || !strings.Contains(err.Error(), "chmod 600 "+path) {
		t.Fatalf("others-readable key: err = %v, want one saying chmod 600 %s", err, path)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadKeyFile(path); err == nil {
		t.Fatal("group-readable key accepted")
	}
}

func TestLoadOrCreateKeyRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret.key")
	const n = 8
	keys := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { keys[i], errs[i] = LoadOrCreateKey(path) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !bytes.Equal(keys[i], keys[0]) {
			t.Fatalf("racing creators got different keys")
		}
	}
}

func TestReadKeyFileFormats(t *testing.T) {
	dir := t.TempDir()
	key := bytes.Repeat([]byte{7}, KeySize)
	tests := []struct {
		name    string
		content []byte
		ok      bool
	}{
		{"base64 with newline", []byte(base64.StdEncoding.EncodeToString(key) + "\n"), true},
		{"raw", key, true},
		{"too short", []byte(base64.StdEncoding.EncodeToString(key[:16])), false},
		{"garbage", []byte("not a key"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
			if err := os.WriteFile(p, tc.content, 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := ReadKeyFile(p)
			if tc.ok && (err != nil || !bytes.Equal(got, key)) {
				t.Fatalf("ReadKeyFile = %x, %v; want %x", got, err, key)
			}
			if !tc.ok && (err == nil || !strings.Contains(err.Error(), "head -c 32")) {
				t.Fatalf("ReadKeyFile err = %v, want one saying how to make a key", err)
			}
		})
	}
	if _, err := ReadKeyFile(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing key file accepted")
	}
}

func TestKeyFromEnvAndLoadMaster(t *testing.T) {
	key := bytes.Repeat([]byte{9}, KeySize)
	dir := t.TempDir()
	def := filepath.Join(dir, "secret.key")

	t.Setenv(EnvKey, "")
	if k, err := KeyFromEnv(EnvKey); k != nil || err != nil {
		t.Fatalf("unset env: %x, %v", k, err)
	}
	b, src, err := LoadMaster("", def)
	if err != nil || src != SourceGenerated {
		t.Fatalf("LoadMaster = %v, %v; want a generated key", src, err)
	}
	b2, src, err := LoadMaster("", def)
	if err != nil || src != SourceDefault || !bytes.Equal(b.Key(), b2.Key()) {
		t.Fatalf("second LoadMaster = %v, %v; want the same default key", src, err)
	}

	t.Setenv(EnvKey, base64.StdEncoding.EncodeToString(key))
	b, src, err = LoadMaster("", def)
	if err != nil || src != SourceEnv || !bytes.Equal(b.Key(), key) {
		t.Fatalf("env LoadMaster = %v, %v", src, err)
	}

	file := filepath.Join(dir, "given.key")
	fileKey := bytes.Repeat([]byte{3}, KeySize)
	if err := os.WriteFile(file, []byte(base64.StdEncoding.EncodeToString(fileKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	b, src, err = LoadMaster(file, def)
	if err != nil || src != SourceFile || !bytes.Equal(b.Key(), fileKey) {
		t.Fatalf("file LoadMaster = %v, %v; the key file must win over the env", src, err)
	}
	if _, _, err := LoadMaster(filepath.Join(dir, "nope"), def); err == nil {
		t.Fatal("a missing --secret-key-file must fail, not fall back")
	}

	for _, bad := range []string{"!!!", base64.StdEncoding.EncodeToString(key[:20])} {
		t.Setenv(EnvKey, bad)
		if _, _, err := LoadMaster("", def); err == nil || !strings.Contains(err.Error(), EnvKey) {
			t.Fatalf("bad env %q: err = %v, want one naming %s", bad, err, EnvKey)
		}
	}
}

func TestParams(t *testing.T) {
	b := testBox(t, 1)
	secret := func(p string) bool { return p == "env.pw" || p == "env.other_pw" }
	params := map[string]string{"env.pw": "s3cret", "env.port": "6379", "cluster.name": "x"}
	sealed := SealParams(b, "cl-1", params, secret)
	if !IsSealed(sealed["env.pw"]) || sealed["env.port"] != "6379" || sealed["cluster.name"] != "x" {
		t.Fatalf("SealParams = %v; want only env.pw sealed", sealed)
	}
	if params["env.pw"] != "s3cret" {
		t.Fatal("SealParams changed its input")
	}
	// Sealing again (a merge of stored and new values) keeps sealed values.
	again := SealParams(b, "cl-1", sealed, secret)
	if again["env.pw"] != sealed["env.pw"] {
		t.Fatal("SealParams sealed an already sealed value again")
	}
	opened, err := OpenParams(b, "cl-1", again, secret)
	if err != nil || opened["env.pw"] != "s3cret" || opened["env.port"] != "6379" {
		t.Fatalf("OpenParams = %v, %v", opened, err)
	}
	if got := SealParams(nil, "cl-1", params, secret); got["env.pw"] != "s3cret" {
		t.Fatal("nil box sealed")
	}

	// Moved to another cluster or another parameter: refused, named.
	if _, err := OpenParams(b, "cl-2", sealed, secret); err == nil || !strings.Contains(err.Error(), "env.pw") {
		t.Fatalf("value moved to cl-2 opened: %v", err)
	}
	moved := map[string]string{"env.other_pw": sealed["env.pw"]}
	if _, err := OpenParams(b, "cl-1", moved, secret); err == nil || !strings.Contains(err.Error(), "env.other_pw") {
		t.Fatalf("value moved to env.other_pw opened: %v", err)
	}
	if _, err := OpenParams(nil, "cl-1", sealed, secret); err == nil || !strings.Contains(err.Error(), "no secret key") {
		t.Fatalf("nil box opened a sealed value: %v", err)
	}
	// A non-secret value that happens to look sealed is the user's text.
	text := map[string]string{"env.port": Prefix + "abc"}
	if got, err := OpenParams(b, "cl-1", text, secret); err != nil || got["env.port"] != Prefix+"abc" {
		t.Fatalf("OpenParams of a non-secret = %v, %v", got, err)
	}
	// Clear secrets stored before sealing was enabled still load.
	if got, err := OpenParams(b, "cl-1", params, secret); err != nil || got["env.pw"] != "s3cret" {
		t.Fatalf("OpenParams of clear values = %v, %v", got, err)
	}
}

func TestCredentials(t *testing.T) {
	b := testBox(t, 1)
	creds := map[string]string{"access_key_id": "AK", "secret_access_key": "SK"}
	sealed := SealCredentials(b, "acme", "rt-1", creds)
	for k, v := range sealed {
		if !IsSealed(v) {
			t.Fatalf("credential %s not sealed: %q", k, v)
		}
	}
	got, err := OpenCredentials(b, "acme", "rt-1", sealed)
	if err != nil || got["access_key_id"] != "AK" || got["secret_access_key"] != "SK" {
		t.Fatalf("OpenCredentials = %v, %v", got, err)
	}
	if _, err := OpenCredentials(b, "acme", "rt-2", sealed); err == nil || !strings.Contains(err.Error(), "runtime rt-2") {
		t.Fatalf("credentials moved to rt-2 opened: %v", err)
	}
	// Runtime ids are per tenant: the same id in another tenant is another
	// runtime.
	if _, err := OpenCredentials(b, "globex", "rt-1", sealed); err == nil || !strings.Contains(err.Error(), "runtime rt-1") {
		t.Fatalf("credentials moved to tenant globex's rt-1 opened: %v", err)
	}
	swapped := map[string]string{"access_key_id": sealed["secret_access_key"]}
	if _, err := OpenCredentials(b, "acme", "rt-1", swapped); err == nil || !strings.Contains(err.Error(), "access_key_id") {
		t.Fatalf("credential swapped between keys opened: %v", err)
	}
}
