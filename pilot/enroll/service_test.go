package enroll

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/pki"
)

func TestJoinAnswersWithSafeCodesAndMessages(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	svc := NewService(e.tokens)
	token, err := e.tokens.Issue(ctx, pki.Identity{Kind: pki.KindFrontgate, ID: "fg-1"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, csr := newCSR(t)
	_, otherCSR := newCSR(t)

	cert, err := svc.Join(ctx, joinReq(token, csr))
	if err != nil || cert.GetCertificatePem() == "" {
		t.Fatalf("join: %v", err)
	}
	for _, tc := range []struct {
		name string
		req  *streamv1.JoinRequest
		code codes.Code
		msg  string
	}{
		// The same key again is a retry whose answer was lost; another
		// key finds the token used.
		{"retried with the same key", joinReq(token, csr), codes.OK, ""},
		{"used", joinReq(token, otherCSR), codes.PermissionDenied, "join token already used"},
		{"unknown", joinReq(TokenPrefix+strings.Repeat("B", 43), csr), codes.PermissionDenied, "join token not recognised"},
		{"malformed csr", joinReq(token, []byte("nope")), codes.InvalidArgument, "csr_pem: certificate request: not a PEM CERTIFICATE REQUEST"},
		{"empty", &streamv1.JoinRequest{}, codes.InvalidArgument, "token_id and token_proof: required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := svc.Join(ctx, tc.req)
			if st := status.Convert(err); st.Code() != tc.code || !strings.HasPrefix(st.Message(), tc.msg) {
				t.Fatalf("got %v %q, want %v %q", st.Code(), st.Message(), tc.code, tc.msg)
			}
		})
	}

	// With etcd gone the caller is told to retry, and nothing more.
	e.client.Close()
	token2 := TokenPrefix + strings.Repeat("C", 43)
	_, err = svc.Join(ctx, joinReq(token2, csr))
	st := status.Convert(err)
	if st.Code() != codes.Unavailable || st.Message() != "enrollment is unavailable; retry later" {
		t.Fatalf("with etcd closed: %v %q, want Unavailable without detail", st.Code(), st.Message())
	}
}

func TestStatusAndStreamErrorCodes(t *testing.T) {
	for _, tc := range []struct {
		err    error
		code   codes.Code
		stream string
	}{
		{refuse(ErrInvalid, "csr_pem: x"), codes.InvalidArgument, "invalid"},
		{fmt.Errorf("relay: %w", refuse(ErrTokenUsed, "join token already used")), codes.PermissionDenied, "permission_denied"},
		{refuse(ErrProof, "p"), codes.PermissionDenied, "permission_denied"},
		{fmt.Errorf("read: %w", context.DeadlineExceeded), codes.DeadlineExceeded, "deadline_exceeded"},
		{errors.New("etcdserver: secret detail"), codes.Unavailable, "unavailable"},
	} {
		st := Status(tc.err)
		se := StreamError(tc.err)
		if st.Code() != tc.code || se.Code != tc.stream || se.Message != st.Message() {
			t.Errorf("%v: got %v / %q, want %v / %q", tc.err, st.Code(), se.Code, tc.code, tc.stream)
		}
		if strings.Contains(st.Message(), "secret detail") || strings.HasPrefix(st.Message(), "relay:") {
			t.Errorf("%v: message %q carries more than the refusal", tc.err, st.Message())
		}
	}
	if StreamError(nil) != nil {
		t.Error("StreamError(nil) is not nil")
	}
}
