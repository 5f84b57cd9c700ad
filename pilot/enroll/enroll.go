// Package enroll is how pilot hands out and renews certificates: it issues
// join tokens, redeems them for a first certificate, renews certificates
// before they expire, and keeps the list of revoked identities.
//
// Token lifecycle. When pilot starts an instance it calls Tokens.Issue for
// the identity it decided (a frontgate, or one cluster's drone) and, for a
// frontgate, the address it will serve on. The token ("hjt_" + 32 random
// bytes, base64url) goes into the instance's user data; pilot keeps only
// its id (SHA-256) and the public key that checks proofs of it
// (internal/jointoken), at /hangar/join-tokens/<id> in its etcd, with the
// identity, the IPs and the expiry (one hour by default). On first boot the
// instance makes its own key and sends a CSR with the token's id and a
// proof of the token over that CSR — never the token — a frontgate to
// EnrollmentService.Join, a drone to its frontgate, which relays it: the
// relay cannot redeem the token for a key of its own. Redeem checks the
// CSR's self-signature, finds the token by id, checks the proof, refuses
// it when unknown, expired, already used or when its identity has been
// revoked, and
// marks it used with a compare-and-swap on the record's revision, so of any
// number of concurrent redeems with different keys exactly one gets a
// certificate. The certificate is for the identity and IPs the token names:
// nothing in the CSR (subject, SANs) and nothing the relaying frontgate says
// is copied. Used and expired records stay a day (an etcd lease) so a late
// retry is told "already used" or "expired" rather than "not recognised",
// then disappear.
//
// Re-joining with the same key. Marking a token used also records the
// SHA-256 of the CSR's public key (its DER SubjectPublicKeyInfo). The answer
// to a join can be lost after the token was marked (a stream cut, a crash
// before the certificate was saved), so a later redeem of a used token whose
// CSR carries that same key — the CSR's self-signature proves the caller
// holds it — is a retry of the same join: while the token has not expired
// and the identity is not revoked it gets a fresh certificate for the same
// identity and IPs, and the record is left as it is. Single use is kept
// where it matters: the token certifies one key, so a redeem with any other
// key is refused as "already used", and concurrent redeems with the same key
// may all succeed (they certify the one key the token is bound to). Joining
// components keep their key on disk until the certificate is saved, so a
// restart retries with it too.
//
// Renewal. Before its certificate expires a component sends a new CSR, its
// current certificate and a proof (the current key's signature over the new
// CSR) over its authenticated stream. Renew checks the current certificate
// against the CA (chain and validity), the revocation list and the proof,
// and issues the same identity with the same addresses to the new key.
//
// Revocation. Revocations are kept at /hangar/revocations/<kind>/<id> and
// mirrored in memory by an etcd watch, so IsRevoked is cheap enough for
// every handshake and every replica sees a revocation made by another.
package enroll

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/types/known/timestamppb"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/jointoken"
	"github.com/hangarhq/hangar/internal/pki"
)

// TokensPrefix is where join-token records live in pilot's etcd.
const TokensPrefix = "/hangar/join-tokens/"

// TokenPrefix starts every join token (jointoken.Prefix).
const TokenPrefix = jointoken.Prefix

// DefaultTokenTTL is how long a join token is valid: enough for an instance
// to boot, short enough that user data read later is useless.
const DefaultTokenTTL = time.Hour

// DefaultCertTTL is the lifetime of an issued certificate.
const DefaultCertTTL = 24 * time.Hour

// tokenRetention is how long a token record outlives its expiry, so a late
// retry gets the precise refusal.
const tokenRetention = 24 * time.Hour

// maxCSRBytes bounds a CSR from an unauthenticated caller; a P-256 CSR is
// well under 1 KiB.
const maxCSRBytes = 16 << 10

// Refusal reasons. The errors returned by Redeem and Renew wrap one of them
// (test with errors.Is); their text is safe to send to the caller.
var (
	ErrInvalid      = errors.New("invalid enrollment request")
	ErrTokenUnknown = errors.New("join token not recognised")
	ErrTokenExpired = errors.New("join token expired")
	ErrTokenUsed    = errors.New("join token already used")
	ErrRevoked      = errors.New("identity revoked")
	ErrCertificate  = errors.New("current certificate not valid")
	ErrProof        = errors.New("renewal proof does not match the current certificate")
	ErrNotAllowed   = errors.New("caller may not renew this identity")
)

// refusal is a refused request: msg is what the caller is told, reason
// which of the Err* values it is.
type refusal struct {
	reason error
	msg    string
}

func (r *refusal) Error() string { return r.msg }
func (r *refusal) Unwrap() error { return r.reason }

func refuse(reason error, format string, args ...any) error {
	return &refusal{reason: reason, msg: fmt.Sprintf(format, args...)}
}

// Config configures Tokens.
type Config struct {
	// Client is pilot's etcd (store.Store.Client()); the caller keeps
	// ownership.
	Client *clientv3.Client
	// CA issues the certificates.
	CA *pki.CA
	// CertTTL is the lifetime of issued certificates (default 24h).
	CertTTL time.Duration
	// CommandPublicKey is pilot's Ed25519 command key, handed to every
	// component with its certificate.
	CommandPublicKey []byte
	// Revocations is consulted on every redeem and renewal.
	Revocations *Revocations
	// ResolveIPs gives the addresses of an identity whose token was issued
	// without any: a frontgate's address is known only once the provider
	// has started it, which is after its user data (and token) was made.
	// No address yet is a retryable failure that leaves the token unused.
	ResolveIPs func(ctx context.Context, id pki.Identity) ([]net.IP, error)
	Logger     *slog.Logger
}

// Tokens issues and redeems join tokens and renews certificates: all the
// ways pilot's CA signs a key for another component.
type Tokens struct {
	c      *clientv3.Client
	ca     *pki.CA
	ttl    time.Duration
	cmdKey []byte
	revs   *Revocations
	log    *slog.Logger

	resolveIPs func(ctx context.Context, id pki.Identity) ([]net.IP, error)
}

// NewTokens checks cfg and returns Tokens.
func NewTokens(cfg Config) (*Tokens, error) {
	switch {
	case cfg.Client == nil:
		return nil, errors.New("enroll: Config.Client is required (pilot's etcd client)")
	case cfg.CA == nil:
		return nil, errors.New("enroll: Config.CA is required")
	case cfg.Revocations == nil:
		return nil, errors.New("enroll: Config.Revocations is required: redeems and renewals must check it")
	case cfg.CertTTL < 0:
		return nil, fmt.Errorf("enroll: Config.CertTTL %v: must be positive (0 means %v)", cfg.CertTTL, DefaultCertTTL)
	case len(cfg.CommandPublicKey) != ed25519.PublicKeySize:
		return nil, fmt.Errorf("enroll: Config.CommandPublicKey has %d bytes, want %d (Ed25519)", len(cfg.CommandPublicKey), ed25519.PublicKeySize)
	}
	ttl := cfg.CertTTL
	if ttl == 0 {
		ttl = DefaultCertTTL
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Tokens{
		c:      cfg.Client,
		ca:     cfg.CA,
		ttl:    ttl,
		cmdKey: append([]byte(nil), cfg.CommandPublicKey...),
		revs:   cfg.Revocations,
		log:    log,

		resolveIPs: cfg.ResolveIPs,
	}, nil
}

// tokenRecord is what etcd keeps for a token (never the token itself).
type tokenRecord struct {
	Identity  string     `json:"identity"`
	IPs       []string   `json:"ips"`
	ExpiresAt time.Time  `json:"expires_at"`
	UsedAt    *time.Time `json:"used_at"`
	// KeySHA256 is the hex SHA-256 of the public key (DER
	// SubjectPublicKeyInfo) the token was redeemed for: the one key a
	// retried join may present again.
	KeySHA256 string `json:"key_sha256,omitempty"`
	// ProofKey checks proofs of the token (jointoken.PublicKey): a join
	// proves the token without sending it.
	ProofKey []byte `json:"proof_key"`
}

// TokenKey is the etcd key of token's record.
func TokenKey(token string) string { return TokensPrefix + jointoken.ID(token) }

// Issue creates a single-use join token for id, valid for ttl, whose
// certificate will carry ips (a frontgate's serving address; drones need
// none).
func (t *Tokens) Issue(ctx context.Context, id pki.Identity, ips []net.IP, ttl time.Duration) (string, error) {
	if err := id.Validate(); err != nil {
		return "", fmt.Errorf("issue join token: %w", err)
	}
	if id.Kind == pki.KindPilot {
		return "", fmt.Errorf("issue join token for %s: only frontgates and drones join; pilot certifies itself", id)
	}
	if ttl <= 0 {
		return "", fmt.Errorf("issue join token for %s: ttl %v must be positive", id, ttl)
	}
	token, err := jointoken.New()
	if err != nil {
		return "", fmt.Errorf("issue join token for %s: %w", id, err)
	}
	rec := tokenRecord{Identity: id.String(), ExpiresAt: time.Now().Add(ttl).UTC(), ProofKey: jointoken.PublicKey(token)}
	for i, ip := range ips {
		if ip == nil || (ip.To4() == nil && len(ip) != net.IPv6len) {
			return "", fmt.Errorf("issue join token for %s: ips[%d] is not an IP address", id, i)
		}
		rec.IPs = append(rec.IPs, ip.String())
	}
	val, err := json.Marshal(rec)
	if err != nil {
		return "", fmt.Errorf("issue join token for %s: %w", id, err)
	}
	// The lease only collects old records; validity is ExpiresAt.
	lease, err := t.c.Grant(ctx, int64((ttl+tokenRetention)/time.Second)+1)
	if err != nil {
		return "", fmt.Errorf("issue join token for %s: lease: %w", id, err)
	}
	key := TokenKey(token)
	// A colliding hash is impossible in practice; the guard makes sure a
	// record is never overwritten even so.
	resp, err := t.c.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(val), clientv3.WithLease(lease.ID))).
		Commit()
	if err != nil {
		return "", fmt.Errorf("issue join token for %s: store: %w", id, err)
	}
	if !resp.Succeeded {
		return "", fmt.Errorf("issue join token for %s: token record exists; try again", id)
	}
	t.log.Info("join token issued", "identity", id.String(), "ips", rec.IPs, "expires_at", rec.ExpiresAt)
	return token, nil
}

// request is a caller's parsed CSR.
type request struct {
	der []byte
	pub any
	// keySum is the hex SHA-256 of the public key (DER
	// SubjectPublicKeyInfo): what a used token's record remembers of the
	// key it certified.
	keySum string
}

// parseCSR reads a caller's CSR, bounded and with its signature checked.
func parseCSR(csrPEM []byte) (*request, error) {
	if len(csrPEM) == 0 {
		return nil, refuse(ErrInvalid, "csr_pem: required (a PEM CERTIFICATE REQUEST)")
	}
	if len(csrPEM) > maxCSRBytes {
		return nil, refuse(ErrInvalid, "csr_pem: %d bytes, at most %d allowed", len(csrPEM), maxCSRBytes)
	}
	csr, err := pki.ParseCSR(csrPEM)
	if err != nil {
		return nil, refuse(ErrInvalid, "csr_pem: %v", err)
	}
	// Re-encoded rather than csr.RawSubjectPublicKeyInfo, so the hash
	// names the key whatever encoding choices the CSR made.
	spki, err := x509.MarshalPKIXPublicKey(csr.PublicKey)
	if err != nil {
		return nil, refuse(ErrInvalid, "csr_pem: public key: %v (an RSA, ECDSA or Ed25519 key allowed)", err)
	}
	sum := sha256.Sum256(spki)
	return &request{der: csr.Raw, pub: csr.PublicKey, keySum: hex.EncodeToString(sum[:])}, nil
}

// Redeem exchanges the token jr proves for a certificate over jr's CSR
// key. The certificate carries the identity and IPs the token was issued
// for, whatever the CSR asks; the identity is returned too. A token already
// used by the CSR's very key is redeemed again (a retry whose first answer
// was lost); with any other key it is refused. Refusals wrap ErrInvalid,
// ErrTokenUnknown, ErrTokenExpired, ErrTokenUsed or ErrRevoked; any other
// error is pilot's (etcd), and the token is then as it was.
func (t *Tokens) Redeem(ctx context.Context, jr *streamv1.JoinRequest) (*streamv1.Certificate, pki.Identity, error) {
	if jr.GetTokenId() == "" || len(jr.GetTokenProof()) == 0 {
		return nil, pki.Identity{}, refuse(ErrInvalid, "token_id and token_proof: required (made from the join token of the user data)")
	}
	// The CSR is checked before the token is looked at, so a request that
	// can never succeed does not use the token up.
	req, err := parseCSR([]byte(jr.GetCsrPem()))
	if err != nil {
		return nil, pki.Identity{}, err
	}
	if !jointoken.ValidID(jr.GetTokenId()) {
		t.log.Warn("join refused", "reason", "malformed token id")
		return nil, pki.Identity{}, refuse(ErrTokenUnknown, "join token not recognised")
	}
	key := TokensPrefix + jr.GetTokenId()
	rec, rev, id, err := t.load(ctx, key)
	if err != nil {
		return nil, id, err
	}
	log := t.log.With("identity", id.String())
	// Checked before anything else about the record, so that a caller
	// without the token (a relay replaying a proof for another CSR)
	// learns nothing of its state.
	if !jointoken.Verify(rec.ProofKey, req.der, jr.GetTokenProof()) {
		log.Warn("join refused", "reason", "token proof does not match the certificate request")
		return nil, id, refuse(ErrTokenUnknown, "join token not recognised")
	}
	now := time.Now()
	retry, err := t.admit(log, rec, id, req.keySum, now)
	if err != nil {
		return nil, id, err
	}
	ips, err := t.addresses(ctx, key, rec, id)
	if err != nil {
		return nil, id, err
	}
	// Issue before marking the token used: a CA failure then leaves the
	// token usable, and a certificate that loses the race below to another
	// key is simply never handed out.
	certPEM, notAfter, err := t.ca.Issue(req.pub, id, ips, nil, t.ttl)
	if err != nil {
		return nil, id, fmt.Errorf("redeem join token for %s: %w", id, err)
	}
	if !retry {
		if retry, err = t.markUsed(ctx, log, key, rev, rec, req.keySum, now); err != nil {
			return nil, id, err
		}
	}
	if err := t.recordDroneKey(ctx, id, req.pub, notAfter); err != nil {
		// The token is marked used by this key, so the drone's retry
		// with the same key is admitted and records it then.
		return nil, id, err
	}
	if retry {
		log.Info("join retried with the same key", "not_after", notAfter)
	} else {
		log.Info("join token redeemed", "not_after", notAfter)
	}
	return t.certificate(certPEM, notAfter), id, nil
}

// load reads the record at key with its revision and identity.
func (t *Tokens) load(ctx context.Context, key string) (tokenRecord, int64, pki.Identity, error) {
	var rec tokenRecord
	resp, err := t.c.Get(ctx, key)
	if err != nil {
		return rec, 0, pki.Identity{}, fmt.Errorf("redeem join token: read: %w", err)
	}
	if len(resp.Kvs) == 0 {
		t.log.Warn("join refused", "reason", "unknown token")
		return rec, 0, pki.Identity{}, refuse(ErrTokenUnknown, "join token not recognised")
	}
	kv := resp.Kvs[0]
	if err := json.Unmarshal(kv.Value, &rec); err != nil {
		return rec, 0, pki.Identity{}, fmt.Errorf("redeem join token: record %s is corrupt: %w", key, err)
	}
	id, err := pki.ParseIdentity(rec.Identity)
	if err != nil {
		return rec, 0, pki.Identity{}, fmt.Errorf("redeem join token: record %s: %w", key, err)
	}
	return rec, kv.ModRevision, id, nil
}

// admit decides whether the key whose hash is keySum may redeem rec now:
// as the first redeem (retry false), or as a retry of the join that used
// the token with this same key (retry true). A used token is refused to
// any other key before anything else, exactly as if retries did not exist.
func (t *Tokens) admit(log *slog.Logger, rec tokenRecord, id pki.Identity, keySum string, now time.Time) (retry bool, err error) {
	used := rec.UsedAt != nil
	// Records used before keys were remembered have no sum and match no
	// key. The sums are of public keys, so comparing them in variable
	// time reveals nothing.
	if used && rec.KeySHA256 != keySum {
		log.Warn("join refused", "reason", "token already used", "used_at", *rec.UsedAt)
		return false, refuse(ErrTokenUsed, "join token already used")
	}
	switch {
	case !now.Before(rec.ExpiresAt):
		log.Warn("join refused", "reason", "token expired", "expired_at", rec.ExpiresAt, "used", used)
		return false, refuse(ErrTokenExpired, "join token expired at %s; ask pilot for a new instance", rec.ExpiresAt.UTC().Format(time.RFC3339))
	case t.revs.IsRevoked(id):
		log.Warn("join refused", "reason", "identity revoked", "used", used)
		return false, refuse(ErrRevoked, "identity %s is revoked; ask pilot for a new instance", id)
	}
	return used, nil
}

// addresses are the IPs the certificate for rec carries: the token's, or
// for a frontgate whose token named none, the ones resolveIPs reports now
// (a retry resolves them again: the instance, hence its address, is the
// same).
func (t *Tokens) addresses(ctx context.Context, key string, rec tokenRecord, id pki.Identity) ([]net.IP, error) {
	ips := make([]net.IP, 0, len(rec.IPs))
	for _, s := range rec.IPs {
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, fmt.Errorf("redeem join token: record %s: ip %q is not an IP address", key, s)
		}
		ips = append(ips, ip)
	}
	if len(ips) > 0 || id.Kind != pki.KindFrontgate || t.resolveIPs == nil {
		return ips, nil
	}
	resolved, err := t.resolveIPs(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("redeem join token for %s: address: %w", id, err)
	}
	if len(resolved) == 0 {
		return nil, fmt.Errorf("redeem join token for %s: its address is not recorded yet; retry", id)
	}
	return resolved, nil
}

// markUsed records that the key whose hash is keySum used rec (read at
// revision rev), with a compare-and-swap so that of concurrent redeems one
// wins. Losing is not the end: if the winner had the same key, this redeem
// is a retry of that join (retry true); otherwise the token is used.
func (t *Tokens) markUsed(ctx context.Context, log *slog.Logger, key string, rev int64, rec tokenRecord, keySum string, now time.Time) (retry bool, err error) {
	used := now.UTC()
	rec.UsedAt = &used
	rec.KeySHA256 = keySum
	val, err := json.Marshal(rec)
	if err != nil {
		return false, fmt.Errorf("redeem join token for %s: %w", rec.Identity, err)
	}
	txn, err := t.c.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(clientv3.OpPut(key, string(val), clientv3.WithIgnoreLease())).
		Commit()
	if err != nil {
		return false, fmt.Errorf("redeem join token for %s: mark used: %w", rec.Identity, err)
	}
	if txn.Succeeded {
		return false, nil
	}
	// Only a redeem changes a record after Issue, so another redeem won;
	// read what it recorded and judge this one as a retry of it.
	won, _, id, err := t.load(ctx, key)
	if err != nil {
		return false, err
	}
	if won.UsedAt == nil {
		log.Warn("join refused", "reason", "token record changed while unused (concurrent redeem)")
		return false, refuse(ErrTokenUsed, "join token already used")
	}
	if _, err := t.admit(log, won, id, keySum, time.Now()); err != nil {
		return false, err
	}
	return true, nil
}

func (t *Tokens) certificate(certPEM []byte, notAfter time.Time) *streamv1.Certificate {
	return &streamv1.Certificate{
		CertificatePem:   string(certPEM),
		CaPem:            string(t.ca.CertPEM()),
		CommandPublicKey: append([]byte(nil), t.cmdKey...),
		NotAfter:         timestamppb.New(notAfter),
	}
}

// Renew issues a new certificate for csrPEM's key with the identity and
// addresses of currentPEM, which must be valid under the CA, not revoked,
// and whose key signed proof over the CSR's DER bytes. caller is the
// authenticated peer that sent the request: a component renews its own
// identity, and a frontgate also relays its drones' renewals (which
// frontgate serves which cluster is not known here; the proof is what makes
// a relayed renewal safe, since only the holder of the drone's current key
// can make it). Refusals wrap ErrInvalid, ErrCertificate, ErrRevoked,
// ErrProof or ErrNotAllowed.
func (t *Tokens) Renew(ctx context.Context, currentPEM, csrPEM, proof []byte, caller pki.Identity) (*streamv1.Certificate, pki.Identity, error) {
	if len(currentPEM) == 0 {
		return nil, pki.Identity{}, refuse(ErrInvalid, "current_certificate_pem: required")
	}
	if len(currentPEM) > maxCSRBytes {
		return nil, pki.Identity{}, refuse(ErrInvalid, "current_certificate_pem: %d bytes, at most %d allowed", len(currentPEM), maxCSRBytes)
	}
	if len(proof) == 0 {
		return nil, pki.Identity{}, refuse(ErrInvalid, "proof: required (signature of the new CSR by the current key)")
	}
	req, err := parseCSR(csrPEM)
	if err != nil {
		return nil, pki.Identity{}, err
	}
	cur, id, err := t.ca.Verify(currentPEM)
	if err != nil {
		t.log.Warn("renewal refused", "caller", caller.String(), "reason", err)
		return nil, pki.Identity{}, refuse(ErrCertificate, "current certificate not valid: %v", err)
	}
	log := t.log.With("identity", id.String(), "caller", caller.String())
	switch {
	case caller == id:
	case caller.Kind == pki.KindFrontgate && id.Kind == pki.KindDrone:
	default:
		log.Warn("renewal refused", "reason", "caller may not renew this identity")
		return nil, id, refuse(ErrNotAllowed, "%s may not renew %s: a component renews its own certificate, a frontgate also relays drones'", caller, id)
	}
	if t.revs.IsRevoked(caller) {
		log.Warn("renewal refused", "reason", "caller revoked")
		return nil, id, refuse(ErrRevoked, "%s is revoked", caller)
	}
	if t.revs.IsRevoked(id) {
		log.Warn("renewal refused", "reason", "identity revoked")
		return nil, id, refuse(ErrRevoked, "%s is revoked", id)
	}
	if err := pki.VerifyProof(cur, req.der, proof); err != nil {
		log.Warn("renewal refused", "reason", err)
		return nil, id, refuse(ErrProof, "%v", err)
	}
	certPEM, notAfter, err := t.ca.Issue(req.pub, id, cur.IPAddresses, cur.DNSNames, t.ttl)
	if err != nil {
		return nil, id, fmt.Errorf("renew certificate for %s: %w", id, err)
	}
	if err := t.recordDroneKey(ctx, id, req.pub, notAfter); err != nil {
		return nil, id, err
	}
	log.Info("certificate renewed", "not_after", notAfter)
	return t.certificate(certPEM, notAfter), id, nil
}
