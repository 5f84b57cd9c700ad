package streamrpc

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
)

// Error codes carried in streamv1.Error: one vocabulary for every hop
// (pilot ⇄ frontgate ⇄ drone), each code naming the gRPC code of the same
// meaning, so an error crosses a stream and a gRPC call without being
// re-spelled on the way (Status, ErrorFor).
const (
	CodeUnavailable       = "unavailable"
	CodeInvalid           = "invalid"
	CodeNotFound          = "not_found"
	CodeDeadline          = "deadline_exceeded"
	CodeCancelled         = "cancelled"
	CodeInternal          = "internal"
	CodePermissionDenied  = "permission_denied"
	CodeUnauthenticated   = "unauthenticated"
	CodeResourceExhausted = "resource_exhausted"
	CodeAborted           = "aborted"
)

// codeTable pairs each stream code with its gRPC code; the first pair of a
// gRPC code is the one StreamCode gives.
var codeTable = []struct {
	stream string
	grpc   codes.Code
}{
	{CodeUnavailable, codes.Unavailable},
	{CodeInvalid, codes.InvalidArgument},
	{CodeNotFound, codes.NotFound},
	{CodeDeadline, codes.DeadlineExceeded},
	{CodeCancelled, codes.Canceled},
	{CodeInternal, codes.Internal},
	{CodePermissionDenied, codes.PermissionDenied},
	{CodeUnauthenticated, codes.Unauthenticated},
	{CodeResourceExhausted, codes.ResourceExhausted},
	{CodeAborted, codes.Aborted},
}

// GRPCCode is the gRPC code of a stream code (codes.Unknown for a code
// outside the vocabulary).
func GRPCCode(code string) codes.Code {
	for _, c := range codeTable {
		if c.stream == code {
			return c.grpc
		}
	}
	return codes.Unknown
}

// StreamCode is the stream code of a gRPC code; codes without one are
// CodeInternal.
func StreamCode(c codes.Code) string {
	for _, e := range codeTable {
		if e.grpc == c {
			return e.stream
		}
	}
	return CodeInternal
}

// Error is a failure reported by the remote side in Response.error.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// GRPCStatus lets status.FromError and status.Code read a remote error as
// the gRPC status of the same meaning.
func (e *Error) GRPCStatus() *status.Status { return status.New(GRPCCode(e.Code), e.Message) }

// ErrClosed is returned by Call once the stream has ended.
var ErrClosed = errors.New("stream closed")

// ErrorResponse builds a response carrying a remote error.
func ErrorResponse(code string, format string, args ...any) *streamv1.Response {
	return &streamv1.Response{Error: &streamv1.Error{Code: code, Message: fmt.Sprintf(format, args...)}}
}

// IsCode reports whether err is a remote Error with the given code.
func IsCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// CodeOf is the stream code err answers with: a remote Error's own, a gRPC
// status's, the context's (deadline, cancelled), and otherwise
// CodeUnavailable — a failure to reach the peer, which callers retry.
func CodeOf(err error) string {
	var remote *Error
	switch {
	case errors.As(err, &remote):
		return remote.Code
	case errors.Is(err, context.DeadlineExceeded):
		return CodeDeadline
	case errors.Is(err, context.Canceled):
		return CodeCancelled
	}
	if st, ok := status.FromError(err); ok && err != nil {
		return StreamCode(st.Code())
	}
	return CodeUnavailable
}

// ErrorFor answers a request that failed with err: err's code (CodeOf),
// and its message after what ("what: message"). A remote Error's message
// is carried without its code, so a relay adds context, not noise.
func ErrorFor(what string, err error) *streamv1.Response {
	msg := err.Error()
	var remote *Error
	if errors.As(err, &remote) {
		msg = remote.Message
	} else if st, ok := status.FromError(err); ok {
		msg = st.Message()
	}
	if what != "" {
		msg = what + ": " + msg
	}
	return &streamv1.Response{Error: &streamv1.Error{Code: CodeOf(err), Message: msg}}
}

// Status is err as the gRPC status of the same meaning, for a relay that
// answers a gRPC caller with what a stream peer said: a remote Error keeps
// its code and message, context errors become DeadlineExceeded and
// Canceled, a gRPC status stays as it is, and anything else (the peer could
// not be reached) is Unavailable, which a caller retries. Codes are read
// whatever their case or underscores, so gRPC's spellings are understood
// too.
func Status(err error) *status.Status {
	var remote *Error
	switch {
	case err == nil:
		return status.New(codes.OK, "")
	case errors.As(err, &remote):
		return status.New(GRPCCode(normalize(remote.Code)), remote.Message)
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, err.Error())
	}
	if st, ok := status.FromError(err); ok {
		return st
	}
	return status.New(codes.Unavailable, err.Error())
}

// normalize maps other spellings of a code (gRPC's "PermissionDenied",
// "invalid_argument", "canceled") to the vocabulary's.
func normalize(code string) string {
	k := strings.ReplaceAll(strings.ToLower(code), "_", "")
	for _, c := range codeTable {
		if k == strings.ReplaceAll(c.stream, "_", "") || k == strings.ToLower(c.grpc.String()) {
			return c.stream
		}
	}
	switch k {
	case "canceled":
		return CodeCancelled
	case "forbidden":
		return CodePermissionDenied
	}
	return code
}
