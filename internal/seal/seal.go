// Package seal encrypts a small secret to one component's certificate key,
// so that whatever relays it — a frontgate between pilot and a drone — can
// carry it but not read it.
//
// It is HPKE (RFC 9180, crypto/hpke) in base mode with the suite
// DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-256-GCM: the recipient's key
// is the ECDSA P-256 key of its certificate (internal/pki), used for key
// agreement. Pilot knows that public key because it issued the certificate;
// only the holder of the private key opens the box. The info string binds a
// box to its purpose and recipient (Info), so a box sealed for one drone or
// one cluster does not open as another's, even for the same key.
package seal

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/hpke"
	"encoding/binary"
	"errors"
	"fmt"
)

// Overhead is how many bytes a box adds to its plaintext: the encapsulated
// P-256 key (65) and the AES-GCM tag (16).
const Overhead = 65 + 16

// MaxPlaintext bounds what is sealed: this is for keys, not data.
const MaxPlaintext = 4 << 10

// ErrOpen is returned when a box does not open: it was sealed to another
// key or for another purpose, or it was altered.
var ErrOpen = errors.New("sealed box does not open with this key")

func suite() (hpke.KDF, hpke.AEAD) { return hpke.HKDFSHA256(), hpke.AES256GCM() }

// Info is the info string for purpose and the recipient's names, each
// length-prefixed so no two lists encode alike.
func Info(purpose string, names ...string) []byte {
	b := []byte("hangar-seal-v1\x00")
	for _, s := range append([]string{purpose}, names...) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}

// MetadataKeyInfo is the info under which pilot seals a cluster's metadata
// key to one of its drones, and the drone opens it.
func MetadataKeyInfo(clusterID, nodeID string) []byte {
	return Info("metadata-key", clusterID, nodeID)
}

// To seals plaintext to pub, which must be an ECDSA P-256 public key (a
// certificate's), under info.
func To(pub crypto.PublicKey, info, plaintext []byte) ([]byte, error) {
	if len(plaintext) > MaxPlaintext {
		return nil, fmt.Errorf("seal: %d bytes, at most %d", len(plaintext), MaxPlaintext)
	}
	ep, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("seal: recipient key is %T, want an ECDSA P-256 key", pub)
	}
	ek, err := ep.ECDH()
	if err != nil {
		return nil, fmt.Errorf("seal: recipient key: %w", err)
	}
	pk, err := hpke.NewDHKEMPublicKey(ek)
	if err != nil {
		return nil, fmt.Errorf("seal: recipient key: %w", err)
	}
	kdf, aead := suite()
	box, err := hpke.Seal(pk, kdf, aead, info, plaintext)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return box, nil
}

// Open opens a box sealed To the public half of priv under the same info.
// It fails with ErrOpen when the box was sealed to another key, for
// another info, or altered.
func Open(priv crypto.Signer, info, box []byte) ([]byte, error) {
	ep, ok := priv.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("open sealed box: key is %T, want an ECDSA P-256 key", priv)
	}
	if len(box) < Overhead || len(box) > Overhead+MaxPlaintext {
		return nil, fmt.Errorf("%w: %d bytes is not the size of a box", ErrOpen, len(box))
	}
	ek, err := ep.ECDH()
	if err != nil {
		return nil, fmt.Errorf("open sealed box: key: %w", err)
	}
	k, err := hpke.NewDHKEMPrivateKey(ek)
	if err != nil {
		return nil, fmt.Errorf("open sealed box: key: %w", err)
	}
	kdf, aead := suite()
	pt, err := hpke.Open(k, kdf, aead, info, box)
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}
