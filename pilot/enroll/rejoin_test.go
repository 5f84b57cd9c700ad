package enroll

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hangarhq/hangar/internal/pki"
)

// keyCSRs are the requests a re-join test sends: two distinct CSRs of one
// key (a, a2), one of another key (b), and a's CSR with a broken signature.
type keyCSRs struct {
	keyA, keyB crypto.Signer
	a, a2, b   []byte
	badA       []byte
}

func newKeyCSRs(t *testing.T) keyCSRs {
	t.Helper()
	keyA, a := newCSR(t)
	a2, err := pki.NewCSR(keyA)
	if err != nil {
		t.Fatal(err)
	}
	keyB, b := newCSR(t)
	blk, _ := pem.Decode(a)
	bad := bytes.Clone(blk.Bytes)
	bad[len(bad)-3] ^= 0xff
	return keyCSRs{keyA: keyA, keyB: keyB, a: a, a2: a2, b: b, badA: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: bad})}
}

// storedRecord is a token's record as etcd holds it.
func storedRecord(t *testing.T, c *clientv3.Client, token string) (value []byte, modRev int64) {
	t.Helper()
	resp, err := c.Get(context.Background(), TokenKey(token))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("token record: %v (%d records)", err, len(resp.Kvs))
	}
	return resp.Kvs[0].Value, resp.Kvs[0].ModRevision
}

// expire moves token's expiry into the past, as an hour going by would.
func expire(t *testing.T, c *clientv3.Client, token string) {
	t.Helper()
	val, _ := storedRecord(t, c, token)
	var rec tokenRecord
	if err := json.Unmarshal(val, &rec); err != nil {
		t.Fatal(err)
	}
	rec.ExpiresAt = time.Now().Add(-time.Second).UTC()
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(context.Background(), TokenKey(token), string(b), clientv3.WithIgnoreLease()); err != nil {
		t.Fatal(err)
	}
}

func keySum(t *testing.T, k crypto.Signer) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// A join whose answer was lost is redeemed again by the same key, and only
// by it; expiry and revocation still end it, and a bad CSR never spends or
// changes a token.
func TestRedeemAgainWithTheSameKey(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	resolved := net.ParseIP("10.9.9.9").To4()
	// ResolveIPs stands for the provider's record of a frontgate's address,
	// for the token issued without one.
	tokens, err := NewTokens(Config{Client: e.client, CA: e.ca, CommandPublicKey: e.cmdKey, Revocations: e.revs,
		ResolveIPs: func(context.Context, pki.Identity) ([]net.IP, error) { return []net.IP{resolved}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	type pick func(keyCSRs) []byte
	same := func(k keyCSRs) []byte { return k.a }
	sameKeyNewCSR := func(k keyCSRs) []byte { return k.a2 }
	other := func(k keyCSRs) []byte { return k.b }
	bad := func(k keyCSRs) []byte { return k.badA }
	for i, tc := range []struct {
		name      string
		noIPs     bool
		first     pick
		firstWant error
		between   func(t *testing.T, id pki.Identity, token string)
		second    pick
		want      error
		// wantKey is whose key the second certificate must carry.
		wantKey func(keyCSRs) crypto.Signer
	}{
		{name: "same key, new CSR", first: same, second: sameKeyNewCSR, wantKey: func(k keyCSRs) crypto.Signer { return k.keyA }},
		{name: "same CSR again", first: same, second: same, wantKey: func(k keyCSRs) crypto.Signer { return k.keyA }},
		{name: "same key, address resolved again", noIPs: true, first: same, second: sameKeyNewCSR, wantKey: func(k keyCSRs) crypto.Signer { return k.keyA }},
		{name: "other key", first: same, second: other, want: ErrTokenUsed},
		{name: "same key after expiry", first: same, between: func(t *testing.T, _ pki.Identity, tok string) { expire(t, e.client, tok) }, second: sameKeyNewCSR, want: ErrTokenExpired},
		{name: "other key after expiry", first: same, between: func(t *testing.T, _ pki.Identity, tok string) { expire(t, e.client, tok) }, second: other, want: ErrTokenUsed},
		{name: "same key after revocation", first: same, between: func(t *testing.T, id pki.Identity, _ string) {
			if err := e.revs.Revoke(ctx, id.Kind, id.ID, "test", "admin"); err != nil {
				t.Fatal(err)
			}
		}, second: sameKeyNewCSR, want: ErrRevoked},
		{name: "bad CSR after use", first: same, second: bad, want: ErrInvalid},
		{name: "bad CSR does not consume", first: bad, firstWant: ErrInvalid, second: other, wantKey: func(k keyCSRs) crypto.Signer { return k.keyB }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := pki.Identity{Kind: pki.KindFrontgate, ID: fmt.Sprintf("fg-%d", i)}
			want := []net.IP{net.IPv4(10, 0, 0, byte(i+1)).To4()}
			var issueIPs []net.IP
			if tc.noIPs {
				want = []net.IP{resolved}
			} else {
				issueIPs = want
			}
			token, err := tokens.Issue(ctx, id, issueIPs, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			k := newKeyCSRs(t)
			first, _, err := tokens.Redeem(ctx, joinReq(token, tc.first(k)))
			if !errors.Is(err, tc.firstWant) {
				t.Fatalf("first redeem: %v, want %v", err, tc.firstWant)
			}
			if tc.between != nil {
				tc.between(t, id, token)
			}
			valBefore, revBefore := storedRecord(t, e.client, token)

			got, gotID, err := tokens.Redeem(ctx, joinReq(token, tc.second(k)))
			if !errors.Is(err, tc.want) {
				t.Fatalf("second redeem: %v, want %v", err, tc.want)
			}
			if tc.firstWant == nil {
				// A used token's record is what the first redeem made of it,
				// whatever came after.
				valAfter, revAfter := storedRecord(t, e.client, token)
				if revAfter != revBefore || !bytes.Equal(valAfter, valBefore) {
					t.Fatalf("second redeem changed the record:\n%s\n->\n%s", valBefore, valAfter)
				}
				var rec tokenRecord
				if err := json.Unmarshal(valAfter, &rec); err != nil {
					t.Fatal(err)
				}
				if rec.UsedAt == nil || rec.KeySHA256 != keySum(t, k.keyA) {
					t.Fatalf("record %s: want it used, by key A", valAfter)
				}
			}
			if tc.want != nil {
				return
			}
			cert, cid, err := e.ca.Verify([]byte(got.CertificatePem))
			if err != nil {
				t.Fatalf("certificate does not verify: %v", err)
			}
			if cid != id || gotID != id {
				t.Fatalf("certificate for %s (Redeem says %s), want %s", cid, gotID, id)
			}
			if len(cert.IPAddresses) != len(want) || !cert.IPAddresses[0].Equal(want[0]) {
				t.Fatalf("certificate IPs %v, want %v", cert.IPAddresses, want)
			}
			if !cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(tc.wantKey(k).Public()) {
				t.Fatal("certificate is not for the second CSR's key")
			}
			if first != nil {
				c1, err := pki.ParseCert([]byte(first.CertificatePem))
				if err != nil {
					t.Fatal(err)
				}
				if c1.SerialNumber.Cmp(cert.SerialNumber) == 0 {
					t.Fatal("the retry got the first certificate back, want a fresh one")
				}
			}
		})
	}
}

// Concurrent redeems with one key all get certificates (they certify the
// same key for the same identity), and the record names that key.
func TestConcurrentRedeemsWithTheSameKeyAllSucceed(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := pki.Identity{Kind: pki.KindDrone, ID: "n1", Cluster: "c1"}
	token, err := e.tokens.Issue(ctx, id, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := newCSR(t)
	const n = 8
	csrs := make([][]byte, n)
	for i := range csrs {
		if csrs[i], err = pki.NewCSR(key); err != nil {
			t.Fatal(err)
		}
	}
	start := make(chan struct{})
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, _, errs[i] = e.tokens.Redeem(ctx, joinReq(token, csrs[i]))
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("redeem %d with the same key: %v", i, err)
		}
	}
	val, _ := storedRecord(t, e.client, token)
	var rec tokenRecord
	if err := json.Unmarshal(val, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.KeySHA256 != keySum(t, key) {
		t.Fatalf("record %s does not name the key", val)
	}
	_, other := newCSR(t)
	if _, _, err := e.tokens.Redeem(ctx, joinReq(token, other)); !errors.Is(err, ErrTokenUsed) {
		t.Fatalf("another key after the race: %v, want %v", err, ErrTokenUsed)
	}
}

// A token used before keys were recorded names no key: nobody re-joins
// with it.
func TestRecordWithoutKeyIsNotReusable(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	token, err := e.tokens.Issue(ctx, pki.Identity{Kind: pki.KindDrone, ID: "n1", Cluster: "c1"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, csr := newCSR(t)
	val, _ := storedRecord(t, e.client, token)
	var rec tokenRecord
	if err := json.Unmarshal(val, &rec); err != nil {
		t.Fatal(err)
	}
	used := time.Now().UTC()
	rec.UsedAt = &used
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.Put(ctx, TokenKey(token), string(b), clientv3.WithIgnoreLease()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.tokens.Redeem(ctx, joinReq(token, csr)); !errors.Is(err, ErrTokenUsed) {
		t.Fatalf("redeem of a token used without a recorded key: %v, want %v", err, ErrTokenUsed)
	}
}
