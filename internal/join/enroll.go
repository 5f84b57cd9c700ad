package join

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"time"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/tlsutil"
)

// Enrollment is one component's first join: everything but the endpoint
// is the same for a frontgate (joining pilot) and a drone (joining through
// its frontgate).
type Enrollment struct {
	// Dir keeps the credentials and, while the join is unfinished, the
	// pending key.
	Dir string
	// Token and CAPEM come from the user data.
	Token string
	CAPEM []byte
	// Peer names what is joined ("pilot", "frontgate") and Address is its
	// host:port; the host must be in the certificate it presents.
	Peer, Address string
	// Server is who must answer: the certificate Address presents must
	// name it (pilot, or the frontgate the user data names).
	Server pki.Identity
	// Want is the identity the user data names: the certificate must carry
	// exactly this one.
	Want pki.Identity
	// Usages the issued certificate must allow besides client auth.
	Usages []x509.ExtKeyUsage
	// Options drive Retry; Enroll sets Where from Peer and Address.
	Options Options
	// Call makes one attempt over a new connection with tc (a reused one
	// would answer from gRPC's reconnect backoff, up to two minutes,
	// rather than try the endpoint again when Retry decides to).
	Call func(ctx context.Context, tc *tls.Config, req *streamv1.JoinRequest) (*streamv1.Certificate, error)
	// BeforeSave, when set, stores what else the answer carries. It runs
	// before the certificate is saved, since cert.pem is what marks the
	// enrollment complete.
	BeforeSave func(*streamv1.Certificate) error
}

// Enroll joins with e's token, retrying with the same pending key until
// the join succeeds, is refused (ErrRefused) or ctx ends, checks the
// certificate and saves it in e.Dir with the user data's CA as the trust
// root: the endpoint that answered must not be able to substitute its own.
func Enroll(ctx context.Context, e Enrollment) (*tlsutil.Creds, error) {
	if e.Options.Logger == nil {
		e.Options.Logger = slog.New(slog.DiscardHandler)
	}
	e.Options.Where = e.Peer + " " + e.Address
	if e.Token == "" {
		return nil, fmt.Errorf("enroll: user data join_token is required: %s holds no certificate yet", e.Dir)
	}
	if len(e.CAPEM) == 0 {
		return nil, errors.New("enroll: user data ca_pem is required to join")
	}
	if e.Server == (pki.Identity{}) {
		return nil, fmt.Errorf("enroll: the identity %s must present is required", e.Peer)
	}
	host, _, err := net.SplitHostPort(e.Address)
	if err != nil || host == "" {
		return nil, fmt.Errorf("enroll: %s address %q: want host:port", e.Peer, e.Address)
	}
	tc, err := tlsutil.AnonymousClientConfig(e.CAPEM, host, e.Server)
	if err != nil {
		return nil, fmt.Errorf("enroll: user data ca_pem: %w", err)
	}
	keyPEM, req, err := Pending(e.Dir, e.Token, e.Options.Logger)
	if err != nil {
		return nil, err
	}
	cert, err := Retry(ctx, e.Options, func(ctx context.Context) (*streamv1.Certificate, error) { return e.Call(ctx, tc, req) })
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	certPEM := []byte(cert.GetCertificatePem())
	if err := CheckIssued(certPEM, tc.RootCAs, e.Want, e.Usages...); err != nil {
		return nil, fmt.Errorf("enroll: the certificate %s returned: %w", e.Options.Where, err)
	}
	if e.BeforeSave != nil {
		if err := e.BeforeSave(cert); err != nil {
			return nil, fmt.Errorf("enroll: %w", err)
		}
	}
	creds, err := tlsutil.Save(e.Dir, keyPEM, certPEM, e.CAPEM)
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	// The pending key is now the credentials' key.pem.
	Finished(e.Dir, e.Options.Logger)
	e.Options.Logger.Info("joined: certificate saved", "via", e.Options.Where, "dir", e.Dir, "identity", creds.Identity().String(), "not_after", creds.Leaf().NotAfter)
	return creds, nil
}

// CheckIssued accepts only a certificate of the CA (roots) for want,
// usable as a client and for every one of usages: what a join or a
// renewal must return.
func CheckIssued(certPEM []byte, roots *x509.CertPool, want pki.Identity, usages ...x509.ExtKeyUsage) error {
	cert, err := pki.ParseCert(certPEM)
	if err != nil {
		return err
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("not valid under the CA of the user data: %w", err)
	}
	for _, u := range usages {
		if !slices.Contains(cert.ExtKeyUsage, u) {
			return fmt.Errorf("it lacks extended key usage %v, which a %s needs", u, want.Kind)
		}
	}
	id, err := pki.IdentityOf(cert)
	if err != nil {
		return err
	}
	if id != want {
		return fmt.Errorf("it is for %s, not this %s (%s)", id, want.Kind, want)
	}
	return nil
}

// LoadIssued loads the credentials a past join saved in dir and checks they
// still serve want. Data dirs get copied by images and backups, and a
// certificate of another identity would be refused on every connection,
// so that is said at start. recreate says who must act when the
// certificate has expired beyond renewal.
func LoadIssued(dir string, want pki.Identity, recreate string) (*tlsutil.Creds, error) {
	creds, err := tlsutil.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("enroll: %w; remove %s to join again (the instance then needs a new join token from pilot)", err, dir)
	}
	if id := creds.Identity(); id != want {
		return nil, fmt.Errorf("enroll: the certificate in %s is for %s, but the user data names %s; remove %s to join again with a new token", dir, id, want, dir)
	}
	if na := creds.Leaf().NotAfter; time.Now().After(na) {
		return nil, fmt.Errorf("enroll: the certificate in %s expired at %s and can no longer be renewed; %s", dir, na.Format(time.RFC3339), recreate)
	}
	return creds, nil
}

// Renewer is the tlsutil.RenewFunc of a component that renews over its
// stream: call carries the request (a frontgate's to pilot, a drone's to its
// frontgate, which relays it unchanged), bounded by timeout, and the answer
// is accepted only when CheckIssued passes for creds' own identity with
// usages. The trust root stays creds': whoever relays the answer must not
// be able to swap it.
func Renewer(creds *tlsutil.Creds, timeout time.Duration, call func(context.Context, *streamv1.Request) (*streamv1.Response, error), usages ...x509.ExtKeyUsage) tlsutil.RenewFunc {
	return func(ctx context.Context, csrPEM, currentPEM, proof []byte) ([]byte, []byte, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		resp, err := call(ctx, &streamv1.Request{Body: &streamv1.Request_RenewCertificate{RenewCertificate: &streamv1.RenewCertificate{
			CsrPem:                string(csrPEM),
			CurrentCertificatePem: string(currentPEM),
			Proof:                 proof,
		}}})
		if err != nil {
			return nil, nil, fmt.Errorf("renew certificate: %w", err)
		}
		c := resp.GetCertificate()
		if c == nil {
			return nil, nil, fmt.Errorf("renew certificate: the answer is %T, want a certificate", resp.GetBody())
		}
		if err := CheckIssued([]byte(c.GetCertificatePem()), creds.Pool(), creds.Identity(), usages...); err != nil {
			return nil, nil, fmt.Errorf("renew certificate: the certificate returned: %w", err)
		}
		return []byte(c.GetCertificatePem()), creds.CAPEM(), nil
	}
}
