// Package pki holds Hangar's certificate model: what identity a certificate
// carries (pilot, a frontgate, or one cluster's drone), the certificate
// authority pilot runs, certificate requests, and the proof of possession a
// renewal carries. A peer's identity always comes from a certificate this CA
// signed, never from what the peer says in a message.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/hangarhq/hangar/internal/atomicfile"
)

// Kind is what a certificate's holder is.
type Kind string

// Kinds of identity.
const (
	KindPilot     Kind = "pilot"
	KindFrontgate Kind = "frontgate"
	KindDrone     Kind = "drone"
)

// Identity is who a certificate speaks for. Drones also carry their cluster,
// which is what their etcd permissions and commands are scoped to.
type Identity struct {
	Kind    Kind
	ID      string // pilot name, frontgate id, or node id
	Cluster string // drones only
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Validate checks the identity's fields.
func (i Identity) Validate() error {
	switch i.Kind {
	case KindPilot, KindFrontgate:
		if i.Cluster != "" {
			return fmt.Errorf("identity %s: only drones carry a cluster", i)
		}
	case KindDrone:
		if !idPattern.MatchString(i.Cluster) {
			return fmt.Errorf("identity %s: cluster %q: letters, digits, '.', '_' and '-' only", i, i.Cluster)
		}
	default:
		return fmt.Errorf("identity kind %q: want pilot, frontgate or drone", i.Kind)
	}
	if !idPattern.MatchString(i.ID) {
		return fmt.Errorf("identity %s: id %q: letters, digits, '.', '_' and '-' only", i, i.ID)
	}
	return nil
}

// String is the identity's URI form.
func (i Identity) String() string { return i.URI().String() }

// URI is the identity as it appears in the certificate's URI SAN:
// hangar://frontgate/<id>, hangar://drone/<cluster>/<node>, hangar://pilot/<id>.
func (i Identity) URI() *url.URL {
	p := "/" + i.ID
	if i.Kind == KindDrone {
		p = "/" + i.Cluster + "/" + i.ID
	}
	return &url.URL{Scheme: "hangar", Host: string(i.Kind), Path: p}
}

// CommonName is the certificate's CN, which etcd takes as the user name
// when it authenticates a client by certificate.
func (i Identity) CommonName() string { return string(i.Kind) + ":" + i.ID }

// ParseIdentity reads the URI form.
func ParseIdentity(s string) (Identity, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "hangar" {
		return Identity{}, fmt.Errorf("identity %q: not a hangar:// URI", s)
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	id := Identity{Kind: Kind(u.Host)}
	switch {
	case id.Kind == KindDrone && len(parts) == 2:
		id.Cluster, id.ID = parts[0], parts[1]
	case id.Kind != KindDrone && len(parts) == 1:
		id.ID = parts[0]
	default:
		return Identity{}, fmt.Errorf("identity %q: malformed path", s)
	}
	return id, id.Validate()
}

// IdentityOf reads the identity of a certificate (which must already have
// been verified against the CA).
func IdentityOf(c *x509.Certificate) (Identity, error) {
	for _, u := range c.URIs {
		if u.Scheme == "hangar" {
			return ParseIdentity(u.String())
		}
	}
	return Identity{}, errors.New("certificate carries no hangar:// identity")
}

// NewKey returns a new P-256 private key.
func NewKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// EncodeKey returns the key as PEM (PKCS#8).
func EncodeKey(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseKey reads a PEM (PKCS#8) key.
func ParseKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("parse key: no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("parse key: not a signing key")
	}
	return s, nil
}

// NewCSR returns a PEM certificate request for key. It carries no identity:
// the issuer decides it (from the join token or the current certificate).
func NewCSR(key crypto.Signer) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "hangar"}}, key)
	if err != nil {
		return nil, fmt.Errorf("create certificate request: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// ParseCSR reads a PEM certificate request and checks its self-signature.
func ParseCSR(b []byte) (*x509.CertificateRequest, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("certificate request: not a PEM CERTIFICATE REQUEST")
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certificate request: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("certificate request: bad signature: %w", err)
	}
	return csr, nil
}

// ParseCert reads one PEM certificate.
func ParseCert(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("certificate: not a PEM CERTIFICATE")
	}
	return x509.ParseCertificate(blk.Bytes)
}

// SignProof signs the DER bytes of a renewal's new CSR with the current
// key: proof that the holder of the current certificate asks for the new one.
func SignProof(key crypto.Signer, csrDER []byte) ([]byte, error) {
	sum := sha256.Sum256(csrDER)
	return key.Sign(rand.Reader, sum[:], crypto.SHA256)
}

// VerifyProof checks a renewal proof against the current certificate.
func VerifyProof(current *x509.Certificate, csrDER, proof []byte) error {
	pub, ok := current.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return errors.New("renewal proof: current certificate key is not ECDSA")
	}
	sum := sha256.Sum256(csrDER)
	if !ecdsa.VerifyASN1(pub, sum[:], proof) {
		return errors.New("renewal proof: signature does not match the current certificate")
	}
	return nil
}

// CA is pilot's certificate authority.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer
	pool    *x509.CertPool
}

// CA file names in its directory.
const (
	caCertFile = "ca.crt"
	caKeyFile  = "ca.key"
)

// LoadOrCreateCA loads the CA from dir, creating it (key mode 0600) on
// first start.
func LoadOrCreateCA(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, caCertFile), filepath.Join(dir, caKeyFile)
	certPEM, err := os.ReadFile(certPath)
	if errors.Is(err, os.ErrNotExist) {
		return createCA(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("read CA: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("read CA key: %w", err)
	}
	if fi, err := os.Stat(keyPath); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("CA key %s is readable by others (mode %v); chmod 600 it", keyPath, fi.Mode().Perm())
	}
	return parseCA(certPEM, keyPEM)
}

func parseCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{cert: cert, certPEM: certPEM, key: key, pool: pool}, nil
}

func createCA(dir string) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create CA dir: %w", err)
	}
	key, err := NewKey()
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Hangar CA", Organization: []string{"Hangar"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM, err := EncodeKey(key)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(filepath.Join(dir, caKeyFile), keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := atomicfile.Write(filepath.Join(dir, caCertFile), certPEM, 0o644); err != nil {
		return nil, err
	}
	return parseCA(certPEM, keyPEM)
}

// CertPEM is the CA certificate, to hand to peers as their trust root.
func (ca *CA) CertPEM() []byte { return ca.certPEM }

// Pool is a pool holding the CA certificate.
func (ca *CA) Pool() *x509.CertPool { return ca.pool }

// Issue certifies pub for id. Drones get client certificates; pilot and
// frontgates, which also serve, get server and client ones, valid for ips.
func (ca *CA) Issue(pub crypto.PublicKey, id Identity, ips []net.IP, dnsNames []string, ttl time.Duration) ([]byte, time.Time, error) {
	if err := id.Validate(); err != nil {
		return nil, time.Time{}, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, time.Time{}, err
	}
	now := time.Now()
	// A certificate holds whole seconds: the time returned is the one it
	// carries, so a holder's renewal schedule matches it.
	notAfter := now.Add(ttl).Truncate(time.Second)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	usage := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if id.Kind != KindDrone {
		usage = append(usage, x509.ExtKeyUsageServerAuth)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: id.CommonName(), Organization: []string{"Hangar"}},
		NotBefore:    now.Add(-time.Minute), // tolerate small clock skew
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usage,
		URIs:         []*url.URL{id.URI()},
		IPAddresses:  ips,
		DNSNames:     dnsNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("issue certificate for %s: %w", id, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), notAfter, nil
}

// Verify checks that certPEM was issued by this CA and is valid now, and
// returns it with its identity.
func (ca *CA) Verify(certPEM []byte) (*x509.Certificate, Identity, error) {
	c, err := ParseCert(certPEM)
	if err != nil {
		return nil, Identity{}, err
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: ca.pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, Identity{}, fmt.Errorf("certificate not valid: %w", err)
	}
	id, err := IdentityOf(c)
	return c, id, err
}

func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certificate serial: %w", err)
	}
	return n, nil
}
