// Package cmdsign signs what pilot sends drones to execute or write, and
// verifies it on the drone, so that a frontgate (or anything else between
// pilot and a drone) cannot make a drone run or install anything pilot did
// not ask for, send it to another node, or replay it long after pilot sent
// it. Two requests are signed: RunCommand (a command line) and
// ConfigureRenderer (confd templates, whose toml names check and reload
// commands and destinations, plus the sealed metadata key). Any request
// added later that leads a drone to execute or write gets its own prefix
// here.
//
// Pilot holds an Ed25519 key (LoadOrCreateKey); drones get its public half
// when they join. The signature covers canonical bytes: a prefix naming the
// request kind and version, then each field as its length (big-endian
// uint64) followed by its bytes. For a RunCommand (Canonical):
//
//	"hangar-command-v1\n"
//	  command_id
//	  node_id
//	  cmd
//	  timeout_seconds  as a decimal integer ("600", "0", "-1")
//	  user
//	  expires_at       as RFC 3339 with nanoseconds in UTC
//	                   (time.RFC3339Nano, e.g. "2031-05-04T10:00:00.5Z")
//
// For a ConfigureRenderer (CanonicalRenderer):
//
//	"hangar-renderer-v1\n"
//	  node_id
//	  cluster_id
//	  the number of files, as a decimal integer
//	  each file's path, then its content, in ascending path order
//	  sealed_metadata_key
//	  expires_at       as above
//	  only when health_check is set: "health_check", check_cmd,
//	    action_cmd, interval_sec, timeout_sec, action_timeout_sec,
//	    healthy_threshold, unhealthy_threshold (numbers in decimal)
//	  only when monitor is set: "monitor", cmd, interval_sec, the number
//	    of items, then each item in the order sent: key, value_type,
//	    statistics_type, the number of enums, each enum
//
// The prefix keeps a signature of one kind from ever being valid as one of
// another kind signed with the same key; the length prefixes make the
// encoding unambiguous (no field can spill into the next). Fields added to
// a message later are not covered until its prefix version changes.
package cmdsign

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
)

// Prefix starts the signed bytes of every command (domain separation).
const Prefix = "hangar-command-v1\n"

// RendererPrefix starts the signed bytes of every renderer configuration.
const RendererPrefix = "hangar-renderer-v1\n"

// RendererLifetime is how long a signed renderer configuration is valid:
// long enough for relays and re-sends after a broken stream, short enough
// that a captured one is useless soon after. Pilot signs it anew for every
// delivery.
const RendererLifetime = 10 * time.Minute

// ExpiryMargin is added to a command's timeout to get its lifetime: long
// enough for relays, retries and pilot asking again for the result of a
// command still running (each ask carries the same signature), short enough
// that a captured command is useless soon after.
const ExpiryMargin = 10 * time.Minute

// defaultTimeout is the drone's timeout for timeout_seconds 0.
const defaultTimeout = 600 * time.Second

// Reasons Verify refuses a command. Verify wraps them with detail; test
// with errors.Is.
var (
	ErrMissingSignature = errors.New("request is not signed")
	ErrBadSignature     = errors.New("signature is not valid")
	ErrWrongTarget      = errors.New("request is addressed to another node")
	ErrExpired          = errors.New("request has expired")
)

// ExpiresAt is the expiry pilot gives a command with timeoutSeconds sent at
// now: now + timeout + ExpiryMargin (timeout 0 is the drone's default).
func ExpiresAt(now time.Time, timeoutSeconds int32) time.Time {
	timeout := time.Duration(timeoutSeconds) * time.Second
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	return now.Add(timeout + ExpiryMargin)
}

// Canonical returns the bytes signed for rc (see the package doc). It fails
// when expires_at is missing or out of range: a command that never expires
// is never signed.
func Canonical(rc *streamv1.RunCommand) ([]byte, error) {
	exp, err := expiry("run_command", rc.GetExpiresAt())
	if err != nil {
		return nil, err
	}
	return encode(Prefix,
		[]byte(rc.GetCommandId()),
		[]byte(rc.GetNodeId()),
		[]byte(rc.GetCmd()),
		[]byte(strconv.FormatInt(int64(rc.GetTimeoutSeconds()), 10)),
		[]byte(rc.GetUser()),
		[]byte(exp.Format(time.RFC3339Nano)),
	), nil
}

// CanonicalRenderer returns the bytes signed for cr (see the package doc).
// Like Canonical, it fails when expires_at is missing or out of range.
func CanonicalRenderer(cr *streamv1.ConfigureRenderer) ([]byte, error) {
	exp, err := expiry("configure_renderer", cr.GetExpiresAt())
	if err != nil {
		return nil, err
	}
	files := cr.GetFiles()
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	fields := make([][]byte, 0, 5+2*len(names))
	fields = append(fields, []byte(cr.GetNodeId()), []byte(cr.GetClusterId()), []byte(strconv.Itoa(len(names))))
	for _, name := range names {
		fields = append(fields, []byte(name), files[name])
	}
	fields = append(fields, cr.GetSealedMetadataKey(), []byte(exp.Format(time.RFC3339Nano)))
	// Only when set, so that what a drone of the release before signs
	// and checks is unchanged for a renderer without one.
	if h := cr.GetHealthCheck(); h != nil {
		num := func(n int32) []byte { return []byte(strconv.Itoa(int(n))) }
		fields = append(fields, []byte("health_check"), []byte(h.GetCheckCmd()), []byte(h.GetActionCmd()),
			num(h.GetIntervalSec()), num(h.GetTimeoutSec()), num(h.GetActionTimeoutSec()), num(h.GetHealthyThreshold()), num(h.GetUnhealthyThreshold()))
	}
	// Likewise only when set: a renderer without a monitor signs the same
	// bytes as before monitors existed.
	if m := cr.GetMonitor(); m != nil {
		items := m.GetItems()
		fields = append(fields, []byte("monitor"), []byte(m.GetCmd()), []byte(strconv.Itoa(int(m.GetIntervalSec()))), []byte(strconv.Itoa(len(items))))
		for _, it := range items {
			fields = append(fields, []byte(it.GetKey()), []byte(it.GetValueType()), []byte(it.GetStatisticsType()), []byte(strconv.Itoa(len(it.GetEnums()))))
			for _, e := range it.GetEnums() {
				fields = append(fields, []byte(e))
			}
		}
	}
	return encode(RendererPrefix, fields...), nil
}

// encode is prefix followed by each field, length first.
func encode(prefix string, fields ...[]byte) []byte {
	n := len(prefix)
	for _, f := range fields {
		n += 8 + len(f)
	}
	b := make([]byte, 0, n)
	b = append(b, prefix...)
	for _, f := range fields {
		b = binary.BigEndian.AppendUint64(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

func expiry(msg string, ts *timestamppb.Timestamp) (time.Time, error) {
	if ts == nil {
		return time.Time{}, fmt.Errorf("%s.expires_at is not set; everything pilot signs must expire", msg)
	}
	if err := ts.CheckValid(); err != nil {
		return time.Time{}, fmt.Errorf("%s.expires_at: %w", msg, err)
	}
	return ts.AsTime().UTC(), nil
}

// Sign signs rc with priv and sets rc.Signature. rc.ExpiresAt must be set
// (see ExpiresAt). Signing again after changing a field replaces the
// signature.
func Sign(priv ed25519.PrivateKey, rc *streamv1.RunCommand) error {
	if rc == nil {
		return errors.New("sign command: no command")
	}
	sig, err := sign(priv, func() ([]byte, error) { return Canonical(rc) })
	if err != nil {
		return fmt.Errorf("sign command %s: %w", rc.GetCommandId(), err)
	}
	rc.Signature = sig
	return nil
}

// SignRenderer signs cr with priv and sets cr.Signature; cr.ExpiresAt must
// be set (now + RendererLifetime).
func SignRenderer(priv ed25519.PrivateKey, cr *streamv1.ConfigureRenderer) error {
	if cr == nil {
		return errors.New("sign renderer configuration: none given")
	}
	sig, err := sign(priv, func() ([]byte, error) { return CanonicalRenderer(cr) })
	if err != nil {
		return fmt.Errorf("sign renderer configuration for node %s: %w", cr.GetNodeId(), err)
	}
	cr.Signature = sig
	return nil
}

func sign(priv ed25519.PrivateKey, canonical func() ([]byte, error)) ([]byte, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("command key has %d bytes, want an Ed25519 private key (%d)", len(priv), ed25519.PrivateKeySize)
	}
	msg, err := canonical()
	if err != nil {
		return nil, err
	}
	return ed25519.Sign(priv, msg), nil
}

// Verify checks that rc carries pub's signature over its current fields,
// is addressed to selfNodeID and has not expired at now. The error wraps
// ErrMissingSignature, ErrBadSignature, ErrWrongTarget or ErrExpired and
// says why. A missing or malformed pub refuses everything (fail closed).
//
// The signature is checked first, so the other checks judge fields pilot
// vouched for.
func Verify(pub ed25519.PublicKey, rc *streamv1.RunCommand, selfNodeID string, now time.Time) error {
	if err := verify(pub, "run_command", rc.GetSignature(), func() ([]byte, error) { return Canonical(rc) }); err != nil {
		return err
	}
	if selfNodeID == "" || rc.GetNodeId() != selfNodeID {
		return fmt.Errorf("%w: node_id %q, this node is %q", ErrWrongTarget, rc.GetNodeId(), selfNodeID)
	}
	exp, _ := expiry("run_command", rc.GetExpiresAt()) // valid: Canonical accepted it
	return checkExpiry(exp, now)
}

// VerifyRenderer checks cr as Verify checks a command: pub's signature
// over its whole content, addressed to this node of this cluster, not
// expired at now.
func VerifyRenderer(pub ed25519.PublicKey, cr *streamv1.ConfigureRenderer, selfNodeID, selfClusterID string, now time.Time) error {
	if err := verify(pub, "configure_renderer", cr.GetSignature(), func() ([]byte, error) { return CanonicalRenderer(cr) }); err != nil {
		return err
	}
	if selfNodeID == "" || cr.GetNodeId() != selfNodeID {
		return fmt.Errorf("%w: node_id %q, this node is %q", ErrWrongTarget, cr.GetNodeId(), selfNodeID)
	}
	if selfClusterID == "" || cr.GetClusterId() != selfClusterID {
		return fmt.Errorf("%w: cluster_id %q, this node is in cluster %q", ErrWrongTarget, cr.GetClusterId(), selfClusterID)
	}
	exp, _ := expiry("configure_renderer", cr.GetExpiresAt()) // valid: CanonicalRenderer accepted it
	return checkExpiry(exp, now)
}

// verify checks sig over the bytes canonical returns.
func verify(pub ed25519.PublicKey, msgName string, sig []byte, canonical func() ([]byte, error)) error {
	if len(sig) == 0 {
		return fmt.Errorf("%w: %s.signature is empty; pilot signs every request a drone executes", ErrMissingSignature, msgName)
	}
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: this drone has no valid command public key (%d bytes, want %d)", ErrBadSignature, len(pub), ed25519.PublicKeySize)
	}
	if len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: signature has %d bytes, want %d", ErrBadSignature, len(sig), ed25519.SignatureSize)
	}
	msg, err := canonical()
	if err != nil {
		// Signing never produces this, so the request was not signed as sent.
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	if !ed25519.Verify(pub, msg, sig) {
		return fmt.Errorf("%w: it does not match the %s and pilot's command key", ErrBadSignature, msgName)
	}
	return nil
}

func checkExpiry(exp, now time.Time) error {
	if !now.Before(exp) {
		return fmt.Errorf("%w: expired at %s, now %s", ErrExpired, exp.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

// LoadOrCreateKey returns the Ed25519 key at path, creating it (mode 0600,
// PEM PKCS#8) when the file does not exist. An existing file may hold the
// PEM form, or the raw 64-byte private key or 32-byte seed. A key file that
// group or others can access is refused: anyone who reads it can make every
// drone run anything.
func LoadOrCreateKey(path string) (ed25519.PrivateKey, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return createKey(path)
	case err != nil:
		return nil, fmt.Errorf("command key: %w", err)
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("command key %s is not a regular file (mode %v)", path, fi.Mode())
	case fi.Mode().Perm()&0o077 != 0:
		return nil, fmt.Errorf("command key %s is accessible by group or others (mode %v); chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("command key: %w", err)
	}
	k, err := ParseKey(b)
	if err != nil {
		return nil, fmt.Errorf("command key %s: %w", path, err)
	}
	return k, nil
}

// ParseKey reads an Ed25519 private key: PEM (PKCS#8, "PRIVATE KEY"), or
// raw bytes — the 64-byte private key or its 32-byte seed.
func ParseKey(b []byte) (ed25519.PrivateKey, error) {
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "PRIVATE KEY" {
			return nil, fmt.Errorf("PEM block is %q, want \"PRIVATE KEY\" (PKCS#8)", blk.Type)
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse PKCS#8 key: %w", err)
		}
		ek, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("key is %T, want Ed25519", k)
		}
		return ek, nil
	}
	switch len(b) {
	case ed25519.PrivateKeySize:
		k := ed25519.PrivateKey(append([]byte(nil), b...))
		// The raw form repeats the public key after the seed; a file
		// whose halves disagree would sign with a key drones don't have.
		if !k.Public().(ed25519.PublicKey).Equal(ed25519.NewKeyFromSeed(k.Seed()).Public()) {
			return nil, errors.New("raw 64-byte key: public half does not match the seed")
		}
		return k, nil
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(b), nil
	}
	return nil, fmt.Errorf("not a PEM PRIVATE KEY, nor a raw Ed25519 key (%d bytes; raw keys have %d or %d)", len(b), ed25519.SeedSize, ed25519.PrivateKeySize)
}

// EncodeKey returns k as PEM (PKCS#8), the form LoadOrCreateKey writes.
func EncodeKey(k ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encode command key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// createKey writes a new key next to path and links it into place, so that
// of two processes creating it at once both end up with the one on disk.
func createKey(path string) (ed25519.PrivateKey, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create command key: %w", err)
	}
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("create command key: %w", err)
	}
	pemKey, err := EncodeKey(k)
	if err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return nil, fmt.Errorf("create command key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := writeSynced(tmp, pemKey); err != nil {
		return nil, fmt.Errorf("create command key %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return LoadOrCreateKey(path)
		}
		// Some filesystems have no hard links; a rename still never
		// leaves a half-written key, only loses the race protection.
		if err := os.Rename(tmp.Name(), path); err != nil {
			return nil, fmt.Errorf("create command key %s: %w", path, err)
		}
	}
	return k, nil
}

func writeSynced(f *os.File, b []byte) error {
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
