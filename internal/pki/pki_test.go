package pki

import (
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestIdentityRoundTrip(t *testing.T) {
	for _, id := range []Identity{
		{Kind: KindFrontgate, ID: "fg-net-1"},
		{Kind: KindDrone, ID: "cln-1", Cluster: "cl-9"},
		{Kind: KindPilot, ID: "pilot"},
	} {
		got, err := ParseIdentity(id.String())
		if err != nil || got != id {
			t.Errorf("%v: round trip gave %v, %v", id, got, err)
		}
	}
	for _, bad := range []Identity{
		{Kind: "root", ID: "x"},
		{Kind: KindDrone, ID: "cln-1"},
		{Kind: KindFrontgate, ID: "a/b"},
		{Kind: KindFrontgate, ID: "fg", Cluster: "c"},
	} {
		if bad.Validate() == nil {
			t.Errorf("%+v validated", bad)
		}
	}
}

func TestCAIssuesAndVerifies(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "ca.key")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("CA key mode %v, want 0600", fi.Mode().Perm())
	}
	again, err := LoadOrCreateCA(dir)
	if err != nil || string(again.CertPEM()) != string(ca.CertPEM()) {
		t.Fatalf("reloading the CA gave a different one: %v", err)
	}
	key, _ := NewKey()
	id := Identity{Kind: KindDrone, ID: "cln-1", Cluster: "cl-1"}
	certPEM, notAfter, err := ca.Issue(key.Public(), id, nil, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if time.Until(notAfter) > time.Hour {
		t.Fatalf("not after %v is beyond the ttl", notAfter)
	}
	cert, got, err := ca.Verify(certPEM)
	if err != nil || got != id {
		t.Fatalf("verify: %v %v", got, err)
	}
	if !cert.NotAfter.Equal(notAfter) {
		t.Fatalf("Issue reported not after %v, the certificate says %v", notAfter, cert.NotAfter)
	}
	if cert.Subject.CommonName != "drone:cln-1" {
		t.Fatalf("CN %q: etcd would not see the drone's user name", cert.Subject.CommonName)
	}
	for _, u := range cert.ExtKeyUsage {
		if u == x509.ExtKeyUsageServerAuth {
			t.Fatal("a drone certificate must not be able to serve")
		}
	}
	// Another CA's certificate is refused.
	other, _ := LoadOrCreateCA(t.TempDir())
	foreign, _, _ := other.Issue(key.Public(), id, nil, nil, time.Hour)
	if _, _, err := ca.Verify(foreign); err == nil {
		t.Fatal("a certificate from another CA verified")
	}
}

func TestCAKeyReadableByOthersIsRefused(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadOrCreateCA(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "ca.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateCA(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("got %v, want a refusal saying to chmod 600", err)
	}
}

func TestRenewalProof(t *testing.T) {
	ca, _ := LoadOrCreateCA(t.TempDir())
	oldKey, _ := NewKey()
	certPEM, _, _ := ca.Issue(oldKey.Public(), Identity{Kind: KindFrontgate, ID: "fg-1"}, []net.IP{net.ParseIP("127.0.0.1")}, nil, time.Hour)
	cert, _ := ParseCert(certPEM)
	newKey, _ := NewKey()
	csrPEM, _ := NewCSR(newKey)
	csr, err := ParseCSR(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	proof, _ := SignProof(oldKey, csr.Raw)
	if err := VerifyProof(cert, csr.Raw, proof); err != nil {
		t.Fatalf("valid proof refused: %v", err)
	}
	stranger, _ := NewKey()
	bad, _ := SignProof(stranger, csr.Raw)
	if VerifyProof(cert, csr.Raw, bad) == nil {
		t.Fatal("a proof by another key was accepted")
	}
}
