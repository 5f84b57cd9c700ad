package enroll

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/streamrpc"
)

// Service is pilot's EnrollmentService: a frontgate's first certificate.
// It is served to callers without any credential, so its answers say no
// more than the refusal messages (never an internal error).
type Service struct {
	pilotv1.UnimplementedEnrollmentServiceServer
	tokens *Tokens
}

// NewService returns the EnrollmentService over t.
func NewService(t *Tokens) *Service { return &Service{tokens: t} }

// Join redeems the request's token for a certificate over its CSR.
func (s *Service) Join(ctx context.Context, req *streamv1.JoinRequest) (*streamv1.Certificate, error) {
	cert, _, err := s.tokens.Redeem(ctx, req)
	if err != nil {
		if Status(err).Code() == codes.Unavailable {
			s.tokens.log.Error("join failed", "err", err)
		}
		return nil, Status(err).Err()
	}
	return cert, nil
}

// Status is the gRPC status to answer err from Redeem or Renew with:
// InvalidArgument or PermissionDenied with the refusal's message, and for
// anything else (pilot's own trouble) Unavailable without detail, so the
// caller retries and learns nothing about pilot's insides.
func Status(err error) *status.Status {
	var r *refusal
	switch {
	case err == nil:
		return status.New(codes.OK, "")
	case errors.As(err, &r) && errors.Is(r.reason, ErrInvalid):
		return status.New(codes.InvalidArgument, r.msg)
	case errors.As(err, &r):
		return status.New(codes.PermissionDenied, r.msg)
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, "enrollment cancelled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, "enrollment timed out; retry")
	}
	return status.New(codes.Unavailable, "enrollment is unavailable; retry later")
}

// StreamError is err from Redeem or Renew as a stream response error, for
// the join and renew_certificate requests that arrive over a frontgate's
// link; the codes are those of Status, spelled as on the stream.
func StreamError(err error) *streamv1.Error {
	if err == nil {
		return nil
	}
	st := Status(err)
	return &streamv1.Error{Code: streamrpc.StreamCode(st.Code()), Message: st.Message()}
}
