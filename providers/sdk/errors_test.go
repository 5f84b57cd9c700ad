package sdk

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Each typed error carries its code and reason through a gRPC status, as
// pilot receives it from a plugin.
func TestTypedErrors(t *testing.T) {
	for _, tc := range []struct {
		err    error
		code   codes.Code
		reason string
		msg    string
	}{
		{NotFound("instance", "i-1"), codes.NotFound, ReasonNotFound, "instance i-1: not found"},
		{QuotaExceeded("cpus", "16"), codes.ResourceExhausted, ReasonQuotaExceeded, "quota of cpus exceeded (limit 16)"},
		{QuotaExceeded("instances", ""), codes.ResourceExhausted, ReasonQuotaExceeded, "quota of instances exceeded: raise"},
		{BadCredentials("signature does not match"), codes.Unauthenticated, ReasonBadCredentials, "update them on the runtime"},
		{Unsupported(CapSnapshots, "ListSnapshots"), codes.Unimplemented, ReasonCapabilityMissing, `lacks capability "snapshots"`},
	} {
		// Through the wire: a status rebuilt from its proto, then wrapped.
		st, _ := status.FromError(tc.err)
		got := fmt.Errorf("run instance: %w", status.ErrorProto(st.Proto()))
		if status.Code(errors.Unwrap(got)) != tc.code || Reason(errors.Unwrap(got)) != tc.reason || !strings.Contains(got.Error(), tc.msg) {
			t.Errorf("%v: code %v, reason %q; want %v, %q, a message with %q", got, status.Code(errors.Unwrap(got)), Reason(errors.Unwrap(got)), tc.code, tc.reason, tc.msg)
		}
	}
	if Reason(errors.New("plain")) != "" || Reason(status.Error(codes.Internal, "x")) != "" {
		t.Error("an untyped error has a reason")
	}
}
