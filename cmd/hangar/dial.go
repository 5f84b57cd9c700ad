package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/hangarhq/hangar/internal/limits"
)

const (
	envToken = "HANGAR_TOKEN"
	envCA    = "HANGAR_CA"
)

// Where pilot, started by `hangar up` with data in DATA/pilot, keeps the
// first admin's token and its CA certificate.
func adminTokenPath(dataDir string) string { return filepath.Join(dataDir, "pilot", "admin.token") }
func caCertPath(dataDir string) string     { return filepath.Join(dataDir, "pilot", "ca", "ca.crt") }

// errNoCA: no CA certificate was named and the default one does not exist
// (yet: pilot creates it at its first start).
var errNoCA = errors.New("no CA certificate")

// dialSecurity is how hangar proves pilot is pilot (the CA) and itself to
// pilot (the API token).
type dialSecurity struct {
	caPEM []byte
	// caFrom names where the CA came from, for error messages.
	caFrom string
	token  string
	// tokenFrom names where the token came from ("" when none was found).
	tokenFrom string
}

// security resolves the CA and token: the flag, else the environment,
// else the files `hangar up` leaves in dataDir (the default $HOME/.hangar
// when dataDir is empty). A missing token is not an error here: pilot
// answers Unauthenticated and says how to pass one.
func (c *cli) security(dataDir string) (dialSecurity, error) {
	var sec dialSecurity
	if dataDir == "" {
		d, err := c.dataDir("")
		if err == nil {
			dataDir = d
		}
	}
	// explicit names the flag or variable that gave the CA: a file the user
	// named must exist, the default one may not.
	var caPath, explicit string
	switch {
	case c.caFlag != "":
		caPath, explicit = c.caFlag, "--ca"
	case strings.TrimSpace(c.getenv(envCA)) != "":
		caPath, explicit = strings.TrimSpace(c.getenv(envCA)), envCA
	case dataDir != "":
		caPath = caCertPath(dataDir)
	}
	noCA := fmt.Errorf("%w to check pilot's identity: pass --ca FILE or set %s (a pilot started by `hangar up` keeps it at %s)", errNoCA, envCA, caCertPath(orDefault(dataDir, "~/.hangar")))
	if caPath == "" {
		return sec, noCA
	}
	switch b, err := os.ReadFile(caPath); {
	case err == nil:
		sec.caPEM, sec.caFrom = b, caPath
	case explicit != "":
		return sec, fmt.Errorf("%s %s: %w", explicit, caPath, err)
	case errors.Is(err, fs.ErrNotExist):
		return sec, noCA
	default:
		return sec, fmt.Errorf("read pilot's CA certificate %s: %w", caPath, err)
	}

	switch {
	case c.tokenFlag != "":
		sec.token, sec.tokenFrom = c.tokenFlag, "--token"
	case strings.TrimSpace(c.getenv(envToken)) != "":
		sec.token, sec.tokenFrom = strings.TrimSpace(c.getenv(envToken)), envToken
	case dataDir != "":
		p := adminTokenPath(dataDir)
		b, err := os.ReadFile(p)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return sec, fmt.Errorf("read the API token in %s: %w", p, err)
		}
		if t := strings.TrimSpace(string(b)); t != "" {
			sec.token, sec.tokenFrom = t, p
		}
	}
	return sec, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// tlsConfig trusts only sec's CA and expects pilot's certificate to name
// the host hangar dials.
func (sec dialSecurity) tlsConfig(addr string) (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(sec.caPEM) {
		return nil, fmt.Errorf("CA certificate %s holds no PEM certificate: pass pilot's ca.crt with --ca or %s", sec.caFrom, envCA)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}, nil
}

// bearerToken sends the API token with every call.
type bearerToken string

func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity keeps the token off any connection that is
// not TLS.
func (bearerToken) RequireTransportSecurity() bool { return true }

// dialPilot opens a TLS client connection to pilot at addr, sending sec's
// token on every call. It is the only place that chooses the transport.
// extra options tune the connection for one use, never its security.
func dialPilot(addr string, sec dialSecurity, extra ...grpc.DialOption) (*grpc.ClientConn, error) {
	if addr == "" {
		return nil, fmt.Errorf("--pilot is empty: give pilot's gRPC address as HOST:PORT, e.g. %s (or set %s)", defaultPilotAddr, envPilotAddr)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("--pilot %q: want HOST:PORT, e.g. %s: %w", addr, defaultPilotAddr, err)
	}
	cfg, err := sec.tlsConfig(addr)
	if err != nil {
		return nil, err
	}
	// The limits let job snapshots carrying many nodes' command output
	// through; gRPC's 4 MiB default is too small for large clusters.
	opts := append(limits.GRPCDialOptions(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if sec.token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearerToken(sec.token)))
	}
	conn, err := grpc.NewClient(addr, append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to pilot at %s: %w", addr, err)
	}
	return conn, nil
}
