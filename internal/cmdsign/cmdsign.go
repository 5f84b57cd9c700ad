// Package cmdsign signs the commands pilot sends to drones and verifies
// them on the drone, so that a frontgate (or anything else between pilot and
// a drone) cannot make a drone run a command pilot did not ask for, run it
// on another node, or replay it long after pilot sent it.
//
// Pilot holds an Ed25519 key (LoadOrCreateKey); drones get its public half
// when they join. The signature covers the canonical bytes of a RunCommand
// (Canonical):
//
//	"hangar-command-v1\n"
//	then, for each field in this order, its length as a big-endian uint64
//	followed by its bytes:
//	  command_id
//	  node_id
//	  cmd
//	  timeout_seconds  as a decimal integer ("600", "0", "-1")
//	  user
//	  expires_at       as RFC 3339 with nanoseconds in UTC
//	                   (time.RFC3339Nano, e.g. "2031-05-04T10:00:00.5Z")
//
// The prefix keeps a command signature from ever being valid as a signature
// of anything else signed with the same key; the length prefixes make the
// encoding unambiguous (no field can spill into the next). Fields added to
// RunCommand later are not covered until the prefix version changes.
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
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
)

// Prefix starts the signed bytes of every command (domain separation).
const Prefix = "hangar-command-v1\n"

// ExpiryMargin is added to a command's timeout to get its lifetime: long
// enough for relays, retries and pilot asking again for the result of a
// command still running (each ask carries the same signature), short enough
// that a captured command is useless soon after.
const ExpiryMargin = 10 * time.Minute

// defaultTimeout is the drone's timeout for timeout_seconds 0.
const defaultTimeout = 600 * time.Second

// CodeUnauthenticated is the streamv1.Error code a drone answers a command
// that fails verification with.
const CodeUnauthenticated = "unauthenticated"

// Reasons Verify refuses a command. Verify wraps them with detail; test
// with errors.Is.
var (
	ErrMissingSignature = errors.New("command is not signed")
	ErrBadSignature     = errors.New("command signature is not valid")
	ErrWrongTarget      = errors.New("command is addressed to another node")
	ErrExpired          = errors.New("command has expired")
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
	exp, err := expiry(rc.GetExpiresAt())
	if err != nil {
		return nil, err
	}
	fields := []string{
		rc.GetCommandId(),
		rc.GetNodeId(),
		rc.GetCmd(),
		strconv.FormatInt(int64(rc.GetTimeoutSeconds()), 10),
		rc.GetUser(),
		exp.Format(time.RFC3339Nano),
	}
	n := len(Prefix)
	for _, f := range fields {
		n += 8 + len(f)
	}
	b := make([]byte, 0, n)
	b = append(b, Prefix...)
	for _, f := range fields {
		b = binary.BigEndian.AppendUint64(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b, nil
}

func expiry(ts *timestamppb.Timestamp) (time.Time, error) {
	if ts == nil {
		return time.Time{}, errors.New("run_command.expires_at is not set; every signed command must expire")
	}
	if err := ts.CheckValid(); err != nil {
		return time.Time{}, fmt.Errorf("run_command.expires_at: %w", err)
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
	if len(priv) != ed25519.PrivateKeySize {
		return fmt.Errorf("sign command %s: command key has %d bytes, want an Ed25519 private key (%d)", rc.GetCommandId(), len(priv), ed25519.PrivateKeySize)
	}
	msg, err := Canonical(rc)
	if err != nil {
		return fmt.Errorf("sign command %s: %w", rc.GetCommandId(), err)
	}
	rc.Signature = ed25519.Sign(priv, msg)
	return nil
}

// Verify checks that rc carries pub's signature over its current fields,
// is addressed to selfNodeID and has not expired at now. The error wraps
// ErrMissingSignature, ErrBadSignature, ErrWrongTarget or ErrExpired and
// says why. A missing or malformed pub refuses everything (fail closed).
//
// The signature is checked first, so the other checks judge fields pilot
// vouched for.
func Verify(pub ed25519.PublicKey, rc *streamv1.RunCommand, selfNodeID string, now time.Time) error {
	if len(rc.GetSignature()) == 0 {
		return fmt.Errorf("%w: run_command.signature is empty; pilot signs every command", ErrMissingSignature)
	}
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: this drone has no valid command public key (%d bytes, want %d)", ErrBadSignature, len(pub), ed25519.PublicKeySize)
	}
	if len(rc.GetSignature()) != ed25519.SignatureSize {
		return fmt.Errorf("%w: signature has %d bytes, want %d", ErrBadSignature, len(rc.GetSignature()), ed25519.SignatureSize)
	}
	msg, err := Canonical(rc)
	if err != nil {
		// Sign never produces this, so the command was not signed as sent.
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	if !ed25519.Verify(pub, msg, rc.GetSignature()) {
		return fmt.Errorf("%w: it does not match the command and pilot's command key", ErrBadSignature)
	}
	if selfNodeID == "" || rc.GetNodeId() != selfNodeID {
		return fmt.Errorf("%w: node_id %q, this node is %q", ErrWrongTarget, rc.GetNodeId(), selfNodeID)
	}
	exp, _ := expiry(rc.GetExpiresAt()) // valid: Canonical accepted it
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
