package join

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/testca"
)

func TestCheckIssued(t *testing.T) {
	ca, other := testca.New(t), testca.New(t)
	fg := pki.Identity{Kind: pki.KindFrontgate, ID: "fg-1"}
	drone := pki.Identity{Kind: pki.KindDrone, ID: "cln-1", Cluster: "cl-1"}
	certOf := func(ca *pki.CA, id pki.Identity) []byte {
		key, err := pki.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		certPEM, _, err := ca.Issue(key.Public(), id, nil, nil, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return certPEM
	}
	serve := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	tests := []struct {
		name   string
		cert   []byte
		want   pki.Identity
		usages []x509.ExtKeyUsage
		err    string // "" for accepted
	}{
		{"the frontgate asked for", certOf(ca, fg), fg, serve, ""},
		{"the drone asked for", certOf(ca, drone), drone, nil, ""},
		{"another identity", certOf(ca, pki.Identity{Kind: pki.KindFrontgate, ID: "fg-2"}), fg, serve, "it is for hangar://frontgate/fg-2, not this frontgate (hangar://frontgate/fg-1)"},
		{"another CA", certOf(other, fg), fg, serve, "not valid under the CA of the user data"},
		{"a drone certificate where a server is needed", certOf(ca, drone), drone, serve, "lacks extended key usage"},
		{"not PEM", []byte("junk"), fg, nil, "certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckIssued(tc.cert, ca.Pool(), tc.want, tc.usages...)
			if tc.err == "" && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("got %v, want an error containing %q", err, tc.err)
			}
		})
	}
}
