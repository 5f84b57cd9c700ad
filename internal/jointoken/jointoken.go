// Package jointoken is the join token's format and the proof a joining
// component sends instead of the token itself.
//
// A join token ("hjt_" + 32 random bytes, base64url) reaches a new instance
// in its user data. A drone's join goes through its frontgate, so sending
// the token would let a compromised frontgate redeem it for a key of its
// own — and pilot would then certify, and seal the cluster's secrets to,
// the frontgate's key as the drone's. So the token never leaves the
// instance: the join request names it by ID (the SHA-256 of the token,
// which is also all pilot stores) and proves it with an Ed25519 signature
// over the certificate request, by a key derived from the token. Pilot
// keeps the public half (PublicKey) when it issues the token. A relay sees
// a proof for one certificate request only; it cannot make one for its own.
package jointoken

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/pki"
)

// Prefix starts every join token, so a leaked one is recognisable (secret
// scanners, logs) and cannot be mistaken for a user token.
const Prefix = "hjt_"

const randomBytes = 32

// proofDomain separates join proofs from anything else signed with a key
// derived from the same token.
const proofDomain = "hangar-join-proof-v1\n"

// New makes a token.
func New() (string, error) {
	raw := make([]byte, randomBytes)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("join token: random: %w", err)
	}
	return Prefix + base64.RawURLEncoding.EncodeToString(raw), nil
}

// WellFormed reports whether token could be one New made.
func WellFormed(token string) bool {
	body, ok := strings.CutPrefix(token, Prefix)
	if !ok || len(body) != base64.RawURLEncoding.EncodedLen(randomBytes) {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(body)
	return err == nil
}

// ID names token without revealing it: the hex SHA-256 of its text.
func ID(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// ValidID reports whether id has the form ID gives.
func ValidID(id string) bool {
	if len(id) != 2*sha256.Size {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil && strings.ToLower(id) == id
}

func privateKey(token string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("hangar-join-key-v1\n" + token))
	return ed25519.NewKeyFromSeed(seed[:])
}

// PublicKey is what pilot keeps to check proofs of token.
func PublicKey(token string) ed25519.PublicKey {
	return privateKey(token).Public().(ed25519.PublicKey)
}

// Prove signs csrDER (a certificate request's DER bytes) with token's key.
func Prove(token string, csrDER []byte) []byte {
	return ed25519.Sign(privateKey(token), append([]byte(proofDomain), csrDER...))
}

// Verify reports whether proof is a proof of the token whose public key is
// pub, for csrDER.
func Verify(pub ed25519.PublicKey, csrDER, proof []byte) bool {
	if len(pub) != ed25519.PublicKeySize || len(proof) != ed25519.SignatureSize {
		return false
	}
	return ed25519.Verify(pub, append([]byte(proofDomain), csrDER...), proof)
}

// Request is the join request for csrPEM proving token.
func Request(token string, csrPEM []byte) (*streamv1.JoinRequest, error) {
	csr, err := pki.ParseCSR(csrPEM)
	if err != nil {
		return nil, fmt.Errorf("join request: %w", err)
	}
	return &streamv1.JoinRequest{CsrPem: string(csrPEM), TokenId: ID(token), TokenProof: Prove(token, csr.Raw)}, nil
}

// Proves reports whether req names token and proves it for its CSR: how a
// party that knows the token (a test double of pilot) checks a request.
func Proves(token string, req *streamv1.JoinRequest) bool {
	if req.GetTokenId() != ID(token) {
		return false
	}
	csr, err := pki.ParseCSR([]byte(req.GetCsrPem()))
	return err == nil && Verify(PublicKey(token), csr.Raw, req.GetTokenProof())
}
