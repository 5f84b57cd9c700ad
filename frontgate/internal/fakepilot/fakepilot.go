// Package fakepilot is a test stand-in for pilot as a frontgate sees it:
// FrontgateLink over mutual TLS (the frontgate is who its certificate says,
// and its Hello must agree), EnrollmentService.Join, and the requests a
// frontgate sends up the stream (drones' joins, certificate renewals). It
// runs a real CA with single-use join tokens, records Hellos, and lets a
// test send requests down the current stream. To test joins that must be
// retried, it can lose answers after redeeming (LoseJoinAnswers); as pilot
// does, it certifies again the key that used a token, and no other.
package fakepilot

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/jointoken"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/streamrpc"
	"github.com/hangarhq/hangar/internal/testca"
	"github.com/hangarhq/hangar/internal/tlsutil"
)

// Pilot is a running fake pilot.
type Pilot struct {
	streamv1.UnimplementedFrontgateLinkServer

	addr string
	ca   *pki.CA
	srv  *grpc.Server
	done chan struct{}
	base context.Context
	stop context.CancelFunc

	commandKey ed25519.PublicKey

	mu       sync.Mutex
	peer     *streamrpc.Peer
	hellos   []*streamv1.Hello
	changed  chan struct{}
	tokens   map[string]*grant
	revoked  map[pki.Identity]bool
	ttl      time.Duration
	renewals map[pki.Identity]int
	joins    int
	// loseAnswers is how many more granted joins lose their answer.
	loseAnswers int
	// joinKeys are the SHA-256 of each granted join's key, in order.
	joinKeys [][sha256.Size]byte
}

type grant struct {
	id       pki.Identity
	ips      []net.IP
	proofKey ed25519.PublicKey
	// usedBy is the SHA-256 of the public key that redeemed the token.
	usedBy *[sha256.Size]byte
}

// errAnswerLost is the failure of a join that was granted but whose answer
// never reached the caller; it is answered as unavailable, so the caller
// retries.
var errAnswerLost = errors.New("fake pilot: the join was granted but its answer was lost")

// Start serves on addr ("127.0.0.1:0" for any port, or the address of a
// previous fake pilot to stand for a restarted one) with a server
// certificate of ca for 127.0.0.1; a nil ca gets a new one. It stops at
// test end.
func Start(t testing.TB, addr string, ca *pki.CA) *Pilot {
	t.Helper()
	if ca == nil {
		ca = testca.New(t)
	}
	self := testca.Creds(t, ca, pki.Identity{Kind: pki.KindPilot, ID: "pilot"}, time.Hour)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("fake pilot: listen %s: %v", addr, err)
	}
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	base, stop := context.WithCancel(context.Background())
	p := &Pilot{
		addr: ln.Addr().String(), ca: ca, done: make(chan struct{}), base: base, stop: stop,
		commandKey: pub, changed: make(chan struct{}), tokens: map[string]*grant{}, revoked: map[pki.Identity]bool{},
		ttl: time.Hour, renewals: map[pki.Identity]int{},
	}
	// Like pilot's port: a client certificate is optional, because Join
	// comes from frontgates that have none yet.
	p.srv = grpc.NewServer(grpc.Creds(credentials.NewTLS(self.ServerConfig(tls.VerifyClientCertIfGiven))))
	streamv1.RegisterFrontgateLinkServer(p.srv, p)
	pilotv1.RegisterEnrollmentServiceServer(p.srv, enrollment{p: p})
	go func() {
		defer close(p.done)
		_ = p.srv.Serve(ln)
	}()
	t.Cleanup(p.Stop)
	return p
}

// Addr is the address the fake pilot listens on.
func (p *Pilot) Addr() string { return p.addr }

// CA is the fake pilot's certificate authority.
func (p *Pilot) CA() *pki.CA { return p.ca }

// CommandKey is the command public key handed out with certificates.
func (p *Pilot) CommandKey() ed25519.PublicKey { return p.commandKey }

// SetCertTTL sets the lifetime of the certificates issued from now on
// (default 1h).
func (p *Pilot) SetCertTTL(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ttl = d
}

// AddToken makes token redeemable once for a certificate of id, valid for
// ips.
func (p *Pilot) AddToken(token string, id pki.Identity, ips ...net.IP) {
	p.mu.Lock()
	defer p.mu.Unlock()
	// Kept by id, as pilot keeps them: joins send the id and a proof.
	p.tokens[jointoken.ID(token)] = &grant{id: id, ips: ips, proofKey: jointoken.PublicKey(token)}
}

// LoseJoinAnswers makes the next n granted joins fail after the token was
// marked used, as when the stream is cut before the answer arrives: the
// caller is told the join is unavailable.
func (p *Pilot) LoseJoinAnswers(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.loseAnswers = n
}

// JoinKeys are the SHA-256 of the DER public key (SubjectPublicKeyInfo)
// of every granted join, lost answers included, in order.
func (p *Pilot) JoinKeys() [][sha256.Size]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.joinKeys)
}

// Revoke refuses id's renewals and, for a frontgate, its streams.
func (p *Pilot) Revoke(id pki.Identity) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.revoked[id] = true
}

// Renewals is how many renewals of id were granted.
func (p *Pilot) Renewals(id pki.Identity) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.renewals[id]
}

// Joins is how many joins were granted (lost answers and re-joins
// included).
func (p *Pilot) Joins() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.joins
}

// ClientCredentials are transport credentials of a frontgate certified by
// this pilot's CA, for tests that start a link without enrolling.
func (p *Pilot) ClientCredentials(t testing.TB, frontgateID string) credentials.TransportCredentials {
	t.Helper()
	c := testca.Creds(t, p.ca, pki.Identity{Kind: pki.KindFrontgate, ID: frontgateID}, time.Hour)
	return credentials.NewTLS(c.ClientConfig("127.0.0.1", tlsutil.PilotIdentity))
}

// Stop ends every stream and the server, as a pilot crash would.
func (p *Pilot) Stop() {
	p.stop()
	p.srv.Stop()
	<-p.done
}

// Connect implements streamv1.FrontgateLinkServer.
func (p *Pilot) Connect(stream streamv1.FrontgateLink_ConnectServer) error {
	id, err := tlsutil.PeerIdentity(stream.Context())
	if err != nil {
		return status.Errorf(codes.Unauthenticated, "fake pilot: %v", err)
	}
	p.mu.Lock()
	revoked := p.revoked[id]
	p.mu.Unlock()
	if id.Kind != pki.KindFrontgate || revoked {
		return status.Errorf(codes.PermissionDenied, "fake pilot: %s may not connect", id)
	}
	hello, err := streamrpc.RecvHello(stream, 5*time.Second)
	if err != nil {
		return err
	}
	if hello.Component != "frontgate" || hello.Id != id.ID {
		return status.Errorf(codes.PermissionDenied, "fake pilot: hello %s %q from %s", hello.Component, hello.Id, id)
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	defer context.AfterFunc(p.base, cancel)()
	peer := streamrpc.NewPeer(stream, p.serve, streamrpc.Options{})
	p.mu.Lock()
	p.peer = peer
	p.hellos = append(p.hellos, hello)
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
	_ = peer.Run(ctx)
	p.mu.Lock()
	if p.peer == peer {
		p.peer = nil
	}
	p.mu.Unlock()
	return nil
}

// serve answers a frontgate's requests, as pilot does.
func (p *Pilot) serve(_ context.Context, req *streamv1.Request) *streamv1.Response {
	var cert *streamv1.Certificate
	var err error
	switch b := req.GetBody().(type) {
	case *streamv1.Request_Join:
		cert, err = p.join(b.Join)
	case *streamv1.Request_RenewCertificate:
		cert, err = p.renew(b.RenewCertificate)
	default:
		return streamrpc.ErrorResponse(streamrpc.CodeInvalid, "fake pilot serves join and renew_certificate only")
	}
	if errors.Is(err, errAnswerLost) {
		return streamrpc.ErrorResponse(streamrpc.CodeUnavailable, "%v", err)
	}
	if err != nil {
		return streamrpc.ErrorResponse(streamrpc.CodePermissionDenied, "%v", err)
	}
	return &streamv1.Response{Body: &streamv1.Response_Certificate{Certificate: cert}}
}

func (p *Pilot) join(req *streamv1.JoinRequest) (*streamv1.Certificate, error) {
	csr, err := pki.ParseCSR([]byte(req.GetCsrPem()))
	if err != nil {
		return nil, err
	}
	key := sha256.Sum256(csr.RawSubjectPublicKeyInfo)
	g, lose, err := p.redeem(req.GetTokenId(), csr.Raw, req.GetTokenProof(), key)
	if err != nil {
		return nil, err
	}
	cert, err := p.issue(csr.PublicKey, g.id, g.ips)
	if err != nil {
		return nil, err
	}
	if lose {
		return nil, errAnswerLost
	}
	return cert, nil
}

// redeem marks token used by key, or refuses it; lose says the answer to
// this join is to be lost.
func (p *Pilot) redeem(tokenID string, csrDER, proof []byte, key [sha256.Size]byte) (g grant, lose bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	gp, ok := p.tokens[tokenID]
	switch {
	case !ok || !jointoken.Verify(gp.proofKey, csrDER, proof):
		return grant{}, false, errors.New("join token unknown or expired")
	case gp.usedBy != nil && *gp.usedBy != key:
		return grant{}, false, errors.New("join token already used")
	}
	gp.usedBy = &key
	p.joins++
	p.joinKeys = append(p.joinKeys, key)
	if p.loseAnswers > 0 {
		p.loseAnswers--
		lose = true
	}
	return *gp, lose, nil
}

func (p *Pilot) renew(req *streamv1.RenewCertificate) (*streamv1.Certificate, error) {
	cur, id, err := p.ca.Verify([]byte(req.GetCurrentCertificatePem()))
	if err != nil {
		return nil, err
	}
	csr, err := pki.ParseCSR([]byte(req.GetCsrPem()))
	if err != nil {
		return nil, err
	}
	if err := pki.VerifyProof(cur, csr.Raw, req.GetProof()); err != nil {
		return nil, err
	}
	p.mu.Lock()
	revoked := p.revoked[id]
	if !revoked {
		p.renewals[id]++
	}
	p.mu.Unlock()
	if revoked {
		return nil, fmt.Errorf("%s is revoked", id)
	}
	return p.issue(csr.PublicKey, id, cur.IPAddresses)
}

func (p *Pilot) issue(pub any, id pki.Identity, ips []net.IP) (*streamv1.Certificate, error) {
	p.mu.Lock()
	ttl := p.ttl
	p.mu.Unlock()
	certPEM, notAfter, err := p.ca.Issue(pub, id, ips, nil, ttl)
	if err != nil {
		return nil, err
	}
	return &streamv1.Certificate{
		CertificatePem:   string(certPEM),
		CaPem:            string(p.ca.CertPEM()),
		CommandPublicKey: p.commandKey,
		NotAfter:         timestamppb.New(notAfter),
	}, nil
}

// enrollment is pilot's EnrollmentService.
type enrollment struct {
	pilotv1.UnimplementedEnrollmentServiceServer
	p *Pilot
}

func (e enrollment) Join(_ context.Context, req *streamv1.JoinRequest) (*streamv1.Certificate, error) {
	cert, err := e.p.join(req)
	if errors.Is(err, errAnswerLost) {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	if err != nil {
		return nil, status.Error(codes.PermissionDenied, err.Error())
	}
	return cert, nil
}

// Hellos returns the Hellos received so far, one per stream.
func (p *Pilot) Hellos() []*streamv1.Hello {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*streamv1.Hello(nil), p.hellos...)
}

// WaitConnected waits until a frontgate stream is up and returns its Hello.
func (p *Pilot) WaitConnected(t testing.TB, timeout time.Duration) *streamv1.Hello {
	t.Helper()
	deadline := time.After(timeout)
	for {
		p.mu.Lock()
		peer, changed := p.peer, p.changed
		var h *streamv1.Hello
		if len(p.hellos) > 0 {
			h = p.hellos[len(p.hellos)-1]
		}
		p.mu.Unlock()
		if peer != nil {
			return h
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("fake pilot %s: no frontgate connected within %v", p.addr, timeout)
		}
	}
}

// Call sends req to the connected frontgate.
func (p *Pilot) Call(ctx context.Context, req *streamv1.Request) (*streamv1.Response, error) {
	p.mu.Lock()
	peer := p.peer
	p.mu.Unlock()
	if peer == nil {
		return nil, streamrpc.ErrClosed
	}
	return peer.Call(ctx, req)
}
