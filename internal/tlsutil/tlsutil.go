// Package tlsutil gives each Hangar component its mutual-TLS credentials: a
// key, its certificate and the CA, kept in a directory and held in memory
// behind an atomic swap, so a renewed certificate is used by the next
// handshake while streams already open carry on. It also reads a peer's
// identity from a gRPC connection and drives renewal before expiry.
package tlsutil

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/hangarhq/hangar/internal/atomicfile"
	"github.com/hangarhq/hangar/internal/backoff"
	"github.com/hangarhq/hangar/internal/pki"
)

// File names inside a credentials directory.
const (
	KeyFile  = "key.pem"
	CertFile = "cert.pem"
	CAFile   = "ca.pem"
)

// Creds are a component's current certificate and trust root.
type Creds struct {
	dir string

	mu       sync.RWMutex
	cert     *tls.Certificate
	leaf     *x509.Certificate
	identity pki.Identity
	pool     *x509.CertPool
	caPEM    []byte
	key      crypto.Signer
}

// Exists reports whether dir holds a certificate.
func Exists(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, CertFile))
	return err == nil
}

// Load reads credentials from dir.
func Load(dir string) (*Creds, error) {
	keyPEM, err := os.ReadFile(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, fmt.Errorf("load credentials: %w", err)
	}
	certPEM, err := os.ReadFile(filepath.Join(dir, CertFile))
	if err != nil {
		return nil, fmt.Errorf("load credentials: %w", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, fmt.Errorf("load credentials: %w", err)
	}
	c := &Creds{dir: dir}
	if err := c.set(keyPEM, certPEM, caPEM); err != nil {
		return nil, fmt.Errorf("load credentials from %s: %w", dir, err)
	}
	return c, nil
}

// Save writes new credentials to dir (the key with mode 0600) and returns
// them loaded.
func Save(dir string, keyPEM, certPEM, caPEM []byte) (*Creds, error) {
	c := &Creds{dir: dir}
	if err := c.Update(keyPEM, certPEM, caPEM); err != nil {
		return nil, err
	}
	return c, nil
}

// Update replaces the credentials, on disk and in memory. New handshakes
// use them at once.
func (c *Creds) Update(keyPEM, certPEM, caPEM []byte) error {
	probe := &Creds{}
	if err := probe.set(keyPEM, certPEM, caPEM); err != nil {
		return err
	}
	if c.dir != "" {
		if err := os.MkdirAll(c.dir, 0o700); err != nil {
			return fmt.Errorf("save credentials: %w", err)
		}
		// The key goes last but one: a crash leaves either the old pair or
		// the new key with the old certificate, which Load refuses loudly
		// (the key does not match) rather than using silently.
		for _, f := range []struct {
			name string
			b    []byte
			mode os.FileMode
		}{{CAFile, caPEM, 0o644}, {KeyFile, keyPEM, 0o600}, {CertFile, certPEM, 0o644}} {
			if err := atomicfile.Write(filepath.Join(c.dir, f.name), f.b, f.mode); err != nil {
				return fmt.Errorf("save credentials: %w", err)
			}
		}
	}
	return c.set(keyPEM, certPEM, caPEM)
}

func (c *Creds) set(keyPEM, certPEM, caPEM []byte) error {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("certificate and key: %w", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	pair.Leaf = leaf
	id, err := pki.IdentityOf(leaf)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return errors.New("CA: no certificate in PEM")
	}
	key, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return errors.New("key: not a signing key")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cert, c.leaf, c.identity, c.pool, c.caPEM, c.key = &pair, leaf, id, pool, caPEM, key
	return nil
}

// Dir is where the credentials are kept ("" for in-memory ones).
func (c *Creds) Dir() string { return c.dir }

// Identity is the identity of the current certificate.
func (c *Creds) Identity() pki.Identity {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.identity
}

// Leaf is the current certificate.
func (c *Creds) Leaf() *x509.Certificate {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.leaf
}

// Key is the current private key.
func (c *Creds) Key() crypto.Signer {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.key
}

// Pool is the trusted CA pool.
func (c *Creds) Pool() *x509.CertPool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.pool
}

// CAPEM is the trusted CA certificate.
func (c *Creds) CAPEM() []byte {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.caPEM
}

func (c *Creds) current() *tls.Certificate {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.cert
}

// ServerConfig serves with the current certificate. clientAuth says
// whether a client certificate is required (RequireAndVerifyClientCert) or
// optional (VerifyClientCertIfGiven, for ports where one call — a join —
// authenticates by token instead).
func (c *Creds) ServerConfig(clientAuth tls.ClientAuthType) *tls.Config {
	// Built per handshake, so a renewed certificate or CA applies at once.
	perConn := func() *tls.Config {
		return &tls.Config{
			MinVersion:   tls.VersionTLS13,
			ClientAuth:   clientAuth,
			ClientCAs:    c.Pool(),
			Certificates: []tls.Certificate{*c.current()},
		}
	}
	cfg := perConn()
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return perConn(), nil }
	return cfg
}

// PilotIdentity is the identity in pilot's own certificate: what a
// frontgate dialing pilot must find there.
var PilotIdentity = pki.Identity{Kind: pki.KindPilot, ID: "pilot"}

// ClientConfig dials serverName (a host or IP in the server's certificate)
// presenting the current certificate, and accepts the server only if its
// certificate, valid under the CA, names server (RequireServer). The zero
// Identity accepts any certificate of the CA: only for servers that are
// not Hangar components (an external etcd).
func (c *Creds) ClientConfig(serverName string, server pki.Identity) *tls.Config {
	return RequireServer(&tls.Config{
		MinVersion:           tls.VersionTLS13,
		ServerName:           serverName,
		RootCAs:              c.Pool(),
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return c.current(), nil },
	}, server)
}

// AnonymousClientConfig trusts caPEM without presenting a certificate: for
// the join call made before a component has one. The server must be
// server, as for ClientConfig.
func AnonymousClientConfig(caPEM []byte, serverName string, server pki.Identity) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("CA: no certificate in PEM")
	}
	return RequireServer(&tls.Config{MinVersion: tls.VersionTLS13, ServerName: serverName, RootCAs: pool}, server), nil
}

// RequireServer makes cfg refuse a server whose certificate does not name
// want (its hangar:// URI SAN). Checking the address alone is not enough:
// pilot's CA certifies every frontgate, so any of them — a revoked one, one
// that held the same address before — would pass for another. The zero
// Identity leaves cfg as it is.
func RequireServer(cfg *tls.Config, want pki.Identity) *tls.Config {
	if want == (pki.Identity{}) {
		return cfg
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		// Runs after the chain and the address were verified.
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("server presented no certificate; want %s", want)
		}
		got, err := pki.IdentityOf(cs.PeerCertificates[0])
		if err != nil {
			return fmt.Errorf("server certificate: %w; want %s", err, want)
		}
		if got != want {
			return fmt.Errorf("server certificate is for %s, not %s", got, want)
		}
		return nil
	}
	return cfg
}

// PeerIdentity returns the identity in the verified client certificate of
// the gRPC call in ctx. A call without one gets an error.
func PeerIdentity(ctx context.Context) (pki.Identity, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return pki.Identity{}, errors.New("no peer in context")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return pki.Identity{}, errors.New("connection is not TLS")
	}
	if len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return pki.Identity{}, errors.New("no verified client certificate")
	}
	return pki.IdentityOf(ti.State.VerifiedChains[0][0])
}

// RenewFunc obtains a new certificate for csrPEM, proving possession of the
// current certificate with proof (pki.SignProof over the CSR's DER bytes).
type RenewFunc func(ctx context.Context, csrPEM []byte, currentPEM []byte, proof []byte) (certPEM, caPEM []byte, err error)

// RenewLoop renews c when two thirds of its lifetime have passed (with a new
// key each time), retrying with backoff on failure, until ctx ends.
func RenewLoop(ctx context.Context, c *Creds, renew RenewFunc, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := backoff.New(time.Second, time.Minute)
	for {
		leaf := c.Leaf()
		life := leaf.NotAfter.Sub(leaf.NotBefore)
		at := leaf.NotBefore.Add(life * 2 / 3)
		if backoff.Sleep(ctx, time.Until(at)) != nil {
			return
		}
		if err := RenewOnce(ctx, c, renew); err != nil {
			wait := b.Next()
			log.Warn("certificate renewal failed; retrying", "err", err, "retry_in", wait, "expires", leaf.NotAfter)
			if backoff.Sleep(ctx, wait) != nil {
				return
			}
			continue
		}
		b.Reset()
		log.Info("certificate renewed", "identity", c.Identity().String(), "not_after", c.Leaf().NotAfter)
	}
}

// RenewOnce renews c now.
func RenewOnce(ctx context.Context, c *Creds, renew RenewFunc) error {
	key, err := pki.NewKey()
	if err != nil {
		return err
	}
	csrPEM, err := pki.NewCSR(key)
	if err != nil {
		return err
	}
	csr, err := pki.ParseCSR(csrPEM)
	if err != nil {
		return err
	}
	proof, err := pki.SignProof(c.Key(), csr.Raw)
	if err != nil {
		return fmt.Errorf("sign renewal proof: %w", err)
	}
	cur := c.current()
	currentPEM := pemCert(cur.Certificate[0])
	certPEM, caPEM, err := renew(ctx, csrPEM, currentPEM, proof)
	if err != nil {
		return err
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		return err
	}
	return c.Update(keyPEM, certPEM, caPEM)
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
