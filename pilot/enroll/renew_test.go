package enroll

import (
	"context"
	"crypto"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hangarhq/hangar/internal/pki"
)

// holder is a component with a current certificate.
type holder struct {
	key     crypto.Signer
	certPEM []byte
}

func certify(t *testing.T, ca *pki.CA, id pki.Identity, ips []net.IP, dns []string, ttl time.Duration) holder {
	t.Helper()
	k, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := ca.Issue(k.Public(), id, ips, dns, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return holder{k, certPEM}
}

// renewal builds a renewal request for h: a new key's CSR signed by signer.
func renewal(t *testing.T, signer crypto.Signer) (newKey crypto.Signer, csrPEM, proof []byte) {
	t.Helper()
	newKey, csrPEM = newCSR(t)
	csr, err := pki.ParseCSR(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	proof, err = pki.SignProof(signer, csr.Raw)
	if err != nil {
		t.Fatal(err)
	}
	return newKey, csrPEM, proof
}

func TestRenew(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	otherCA, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fg := pki.Identity{Kind: pki.KindFrontgate, ID: "fg-1"}
	fg2 := pki.Identity{Kind: pki.KindFrontgate, ID: "fg-2"}
	drone := pki.Identity{Kind: pki.KindDrone, ID: "n1", Cluster: "c1"}
	drone2 := pki.Identity{Kind: pki.KindDrone, ID: "n2", Cluster: "c1"}
	revoked := pki.Identity{Kind: pki.KindDrone, ID: "n-revoked", Cluster: "c1"}
	revokedFG := pki.Identity{Kind: pki.KindFrontgate, ID: "fg-revoked"}
	for _, r := range []pki.Identity{revoked, revokedFG} {
		if err := e.revs.Revoke(ctx, r.Kind, r.ID, "test", "admin"); err != nil {
			t.Fatal(err)
		}
	}
	fgIPs := []net.IP{net.ParseIP("10.0.0.5").To4(), net.ParseIP("fd00::5")}

	expired := certify(t, e.ca, fg, nil, nil, time.Millisecond)
	eventually(t, "the short certificate's expiry", func() bool {
		c, err := pki.ParseCert(expired.certPEM)
		return err == nil && time.Now().After(c.NotAfter)
	})

	for _, tc := range []struct {
		name   string
		cur    holder
		signer func(h holder) crypto.Signer // nil: the current key
		caller pki.Identity
		want   error // nil: renewed
		msg    string
	}{
		{name: "frontgate renews itself", cur: certify(t, e.ca, fg, fgIPs, []string{"fg.local"}, time.Hour), caller: fg},
		{name: "drone relayed by a frontgate", cur: certify(t, e.ca, drone, nil, nil, time.Hour), caller: fg},
		{name: "proof by another key", cur: certify(t, e.ca, fg, fgIPs, nil, time.Hour), caller: fg,
			signer: func(holder) crypto.Signer { k, _ := pki.NewKey(); return k }, want: ErrProof, msg: "renewal proof"},
		{name: "expired certificate", cur: expired, caller: fg, want: ErrCertificate, msg: "current certificate not valid: "},
		{name: "certificate of another CA", cur: certify(t, otherCA, fg, nil, nil, time.Hour), caller: fg, want: ErrCertificate},
		{name: "revoked drone", cur: certify(t, e.ca, revoked, nil, nil, time.Hour), caller: fg, want: ErrRevoked, msg: "hangar://drone/c1/n-revoked is revoked"},
		{name: "revoked frontgate", cur: certify(t, e.ca, revokedFG, nil, nil, time.Hour), caller: revokedFG, want: ErrRevoked},
		{name: "relay through a revoked frontgate", cur: certify(t, e.ca, drone, nil, nil, time.Hour), caller: revokedFG, want: ErrRevoked},
		{name: "frontgate renews another frontgate", cur: certify(t, e.ca, fg2, nil, nil, time.Hour), caller: fg, want: ErrNotAllowed},
		{name: "drone renews another drone", cur: certify(t, e.ca, drone2, nil, nil, time.Hour), caller: drone, want: ErrNotAllowed},
		{name: "no caller", cur: certify(t, e.ca, drone, nil, nil, time.Hour), caller: pki.Identity{}, want: ErrNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			signer := tc.cur.key
			if tc.signer != nil {
				signer = tc.signer(tc.cur)
			}
			newKey, csrPEM, proof := renewal(t, signer)
			got, id, err := e.tokens.Renew(ctx, tc.cur.certPEM, csrPEM, proof, tc.caller)
			if tc.want != nil {
				if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("err %v, want %v containing %q", err, tc.want, tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			old, oldID, err := e.ca.Verify(tc.cur.certPEM)
			if err != nil {
				t.Fatal(err)
			}
			cert, newID, err := e.ca.Verify([]byte(got.CertificatePem))
			if err != nil {
				t.Fatalf("renewed certificate: %v", err)
			}
			if id != oldID || newID != oldID {
				t.Fatalf("renewed as %s (reported %s), want %s", newID, id, oldID)
			}
			if !cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(newKey.Public()) {
				t.Fatal("renewed certificate is not for the new key")
			}
			if len(cert.IPAddresses) != len(old.IPAddresses) || strings.Join(cert.DNSNames, ",") != strings.Join(old.DNSNames, ",") {
				t.Fatalf("renewed for %v %v, want the current %v %v", cert.IPAddresses, cert.DNSNames, old.IPAddresses, old.DNSNames)
			}
			for i := range old.IPAddresses {
				if !cert.IPAddresses[i].Equal(old.IPAddresses[i]) {
					t.Fatalf("renewed for %v, want %v", cert.IPAddresses, old.IPAddresses)
				}
			}
			if !cert.NotAfter.After(old.NotAfter) {
				t.Fatalf("renewed certificate ends %v, not after the current %v", cert.NotAfter, old.NotAfter)
			}
		})
	}
}

func TestRenewRefusesMalformedRequests(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	fg := pki.Identity{Kind: pki.KindFrontgate, ID: "fg-1"}
	cur := certify(t, e.ca, fg, nil, nil, time.Hour)
	_, csrPEM, proof := renewal(t, cur.key)
	for _, tc := range []struct {
		name              string
		current, csr, prf []byte
		msg               string
	}{
		{"no current certificate", nil, csrPEM, proof, "current_certificate_pem: required"},
		{"current not a certificate", []byte("junk"), csrPEM, proof, "current certificate not valid"},
		{"no csr", cur.certPEM, nil, proof, "csr_pem: required"},
		{"no proof", cur.certPEM, csrPEM, nil, "proof: required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := e.tokens.Renew(ctx, tc.current, tc.csr, tc.prf, fg); err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err %v, want one containing %q", err, tc.msg)
			}
		})
	}
}
