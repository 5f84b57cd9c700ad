package streamrpc

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestStatus(t *testing.T) {
	tests := []struct {
		err  error
		code codes.Code
	}{
		{&Error{Code: "permission_denied"}, codes.PermissionDenied},
		{&Error{Code: "PermissionDenied"}, codes.PermissionDenied},
		{&Error{Code: CodeInvalid}, codes.InvalidArgument},
		{&Error{Code: "unauthenticated"}, codes.Unauthenticated},
		{&Error{Code: CodeNotFound}, codes.NotFound},
		{&Error{Code: CodeCancelled}, codes.Canceled},
		{&Error{Code: CodeDeadline}, codes.DeadlineExceeded},
		{&Error{Code: CodeInternal}, codes.Internal},
		{&Error{Code: "something new"}, codes.Unknown},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{status.Error(codes.Aborted, "x"), codes.Aborted},
		{errors.New("pilot link down"), codes.Unavailable},
	}
	for _, tt := range tests {
		if got := Status(tt.err).Code(); got != tt.code {
			t.Errorf("Status(%v) = %v, want %v", tt.err, got, tt.code)
		}
	}
}

// Every code of the vocabulary goes to gRPC and back unchanged, and a
// remote error reads as its gRPC status.
func TestCodesRoundTrip(t *testing.T) {
	for _, c := range codeTable {
		if got := StreamCode(GRPCCode(c.stream)); got != c.stream {
			t.Errorf("%s -> %v -> %s", c.stream, GRPCCode(c.stream), got)
		}
		if got := status.Code(&Error{Code: c.stream}); got != c.grpc {
			t.Errorf("status.Code(remote %s) = %v, want %v", c.stream, got, c.grpc)
		}
	}
	if StreamCode(codes.DataLoss) != CodeInternal {
		t.Error("a gRPC code outside the vocabulary is not internal")
	}
}

func TestErrorFor(t *testing.T) {
	for _, tc := range []struct {
		err        error
		code, want string
	}{
		{&Error{Code: CodePermissionDenied, Message: "token used"}, CodePermissionDenied, "join: token used"},
		{status.Error(codes.InvalidArgument, "bad csr"), CodeInvalid, "join: bad csr"},
		{context.DeadlineExceeded, CodeDeadline, "join: context deadline exceeded"},
		{errors.New("no stream to pilot"), CodeUnavailable, "join: no stream to pilot"},
	} {
		e := ErrorFor("join", tc.err).GetError()
		if e.GetCode() != tc.code || e.GetMessage() != tc.want {
			t.Errorf("ErrorFor(%v) = %s %q, want %s %q", tc.err, e.GetCode(), e.GetMessage(), tc.code, tc.want)
		}
	}
}
