// Package secretbox keeps secrets encrypted at rest: provider credentials
// and password parameters in pilot's store, and password env values in the
// frontgates' metadata trees. A Box seals a string with AES-256-GCM into
// "enc:v1:<base64(nonce|ciphertext)>"; associated data binds each sealed
// value to its place (a cluster id and parameter path, an etcd key), so a
// value copied to another place does not open there. Pilot holds one master
// key; per-cluster metadata keys are derived from it with HKDF-SHA256, so a
// drone gets the key of its own cluster and nothing more.
package secretbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// Prefix starts every sealed value.
const Prefix = "enc:v1:"

// KeySize is the size of every key: AES-256.
const KeySize = 32

// hkdfSalt separates Hangar's derived keys from any other use of the
// master key.
const hkdfSalt = "hangar secretbox v1"

// ErrOpen is returned (wrapped) when a sealed value does not decrypt: a
// wrong key, a value moved to another place, or a tampered value.
var ErrOpen = errors.New("sealed value does not decrypt: wrong key, value moved from another place, or tampered")

// Box seals and opens values with one key. It is safe for concurrent use.
type Box struct {
	key  []byte
	aead cipher.AEAD
}

// New returns a Box over a 32-byte key. The key is copied.
func New(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("secret key: %d bytes; it must be exactly %d bytes (AES-256)", len(key), KeySize)
	}
	k := append([]byte(nil), key...)
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	return &Box{key: k, aead: aead}, nil
}

// IsSealed reports whether s has the form of a sealed value.
func IsSealed(s string) bool { return strings.HasPrefix(s, Prefix) }

// Seal encrypts plaintext bound to ad (the value's place: Open must be given
// the same ad). Each call uses a fresh random nonce, so equal plaintexts
// give different sealed values.
func (b *Box) Seal(plaintext, ad string) string {
	nonce := make([]byte, b.aead.NonceSize(), b.aead.NonceSize()+len(plaintext)+b.aead.Overhead())
	// crypto/rand.Read never fails (the runtime aborts instead), so there
	// is no error to return.
	_, _ = rand.Read(nonce)
	sealed := b.aead.Seal(nonce, nonce, []byte(plaintext), []byte(ad))
	return Prefix + base64.StdEncoding.EncodeToString(sealed)
}

// Open decrypts a value made by Seal with the same key and ad.
func (b *Box) Open(s, ad string) (string, error) {
	enc, ok := strings.CutPrefix(s, Prefix)
	if !ok {
		return "", fmt.Errorf("not a sealed value: it must start with %q", Prefix)
	}
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return "", fmt.Errorf("sealed value: bad base64 after %q: %w", Prefix, err)
	}
	ns := b.aead.NonceSize()
	if len(raw) < ns+b.aead.Overhead() {
		return "", fmt.Errorf("sealed value: %d bytes, shorter than nonce and tag (%d)", len(raw), ns+b.aead.Overhead())
	}
	plain, err := b.aead.Open(nil, raw[:ns], raw[ns:], []byte(ad))
	if err != nil {
		return "", ErrOpen
	}
	return string(plain), nil
}

// Derive returns a Box over a sub-key for label (HKDF-SHA256 of this Box's
// key): distinct labels give independent keys, and a sub-key reveals
// nothing about the key it came from.
func (b *Box) Derive(label string) (*Box, error) {
	if label == "" {
		return nil, errors.New("derive secret key: label is empty; name what the key is for (e.g. \"metadata:<cluster_id>\")")
	}
	k, err := hkdf.Key(sha256.New, b.key, []byte(hkdfSalt), label, KeySize)
	if err != nil {
		return nil, fmt.Errorf("derive secret key %q: %w", label, err)
	}
	return New(k)
}

// Metadata returns the Box of a cluster's metadata values: the key the
// cluster's drones receive (ConfigureRenderer.metadata_key).
func (b *Box) Metadata(clusterID string) (*Box, error) {
	if clusterID == "" {
		return nil, errors.New("metadata key: cluster id is empty")
	}
	return b.Derive("metadata:" + clusterID)
}

// Key returns a copy of the key, to hand a derived key to its holder. Never
// log it.
func (b *Box) Key() []byte { return append([]byte(nil), b.key...) }

// String hides the key from fmt's %v and %s.
func (b *Box) String() string { return "secretbox.Box{key:redacted}" }

// GoString hides the key from fmt's %#v.
func (b *Box) GoString() string { return b.String() }

// LogValue hides the key from slog.
func (b *Box) LogValue() slog.Value { return slog.StringValue(b.String()) }
