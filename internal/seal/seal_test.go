package seal

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/hangarhq/hangar/internal/pki"
)

func TestSealOpen(t *testing.T) {
	drone, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("0123456789abcdef0123456789abcdef")
	info := Info("metadata-key", "cl-1", "cln-1")
	box, err := To(drone.Public(), info, secret)
	if err != nil {
		t.Fatal(err)
	}
	if len(box) != len(secret)+Overhead {
		t.Errorf("box has %d bytes, want %d", len(box), len(secret)+Overhead)
	}
	if bytes.Contains(box, secret) {
		t.Fatal("box carries the secret in clear")
	}
	got, err := Open(drone, info, box)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if !bytes.Equal(got, secret) {
		t.Fatalf("opened %q, want %q", got, secret)
	}
	again, _ := To(drone.Public(), info, secret)
	if bytes.Equal(again, box) {
		t.Error("two boxes of the same secret are equal: the encapsulated key must be fresh each time")
	}

	flipped := append([]byte(nil), box...)
	flipped[len(flipped)-1] ^= 1
	for name, tc := range map[string]struct {
		key  *ecdsa.PrivateKey
		info []byte
		box  []byte
	}{
		"other key":     {other, info, box},
		"other node":    {drone, Info("metadata-key", "cl-1", "cln-2"), box},
		"other purpose": {drone, Info("other", "cl-1", "cln-1"), box},
		"altered":       {drone, info, flipped},
		"truncated":     {drone, info, box[:Overhead-1]},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Open(tc.key, tc.info, tc.box); !errors.Is(err, ErrOpen) {
				t.Fatalf("open: %v, want ErrOpen", err)
			}
		})
	}
}

func TestInfoUnambiguous(t *testing.T) {
	if bytes.Equal(Info("p", "ab", "c"), Info("p", "a", "bc")) {
		t.Fatal("different names encode alike")
	}
}

func TestRefusesOtherKeyTypes(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := To(pub, nil, []byte("x")); err == nil {
		t.Error("sealed to an Ed25519 key")
	}
	if _, err := Open(priv, nil, make([]byte, Overhead+1)); err == nil {
		t.Error("opened with an Ed25519 key")
	}
	k, _ := pki.NewKey()
	if _, err := To(k.Public(), nil, make([]byte, MaxPlaintext+1)); err == nil {
		t.Error("sealed more than MaxPlaintext")
	}
}
