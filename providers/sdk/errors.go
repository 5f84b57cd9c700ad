package sdk

import (
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Typed errors a provider answers with. Each is a gRPC status with the code
// pilot acts on, and an ErrorInfo (domain ErrorDomain) whose reason names
// the kind, so pilot tells "the instance is gone" from "the cloud refused
// the credentials" without reading messages:
//
//	NotFound        codes.NotFound            reason NOT_FOUND        the job fails; deleting it is done
//	QuotaExceeded   codes.ResourceExhausted   reason QUOTA_EXCEEDED   the job fails: a retry cannot help
//	BadCredentials  codes.Unauthenticated     reason BAD_CREDENTIALS  the job fails: fix the runtime's credentials
//	Unsupported     codes.Unimplemented       reason CAPABILITY_MISSING (capabilities.go)
//
// Any other error is taken as passing (Unavailable, DeadlineExceeded,
// Internal…) and the task is retried.
const (
	ReasonNotFound       = "NOT_FOUND"
	ReasonQuotaExceeded  = "QUOTA_EXCEEDED"
	ReasonBadCredentials = "BAD_CREDENTIALS"
)

// NotFound is the answer for an id the provider does not know: kind is
// "instance", "network", "volume", "snapshot"….
func NotFound(kind, id string) error {
	return typed(codes.NotFound, ReasonNotFound, map[string]string{"kind": kind, "id": id}, "%s %s: not found", kind, id)
}

// QuotaExceeded is the answer when the cloud's quota for resource (e.g.
// "instances", "cpus", "volume_gib") leaves no room for the call; limit
// may be empty when unknown.
func QuotaExceeded(resource, limit string) error {
	msg := "quota of " + resource + " exceeded"
	if limit != "" {
		msg += " (limit " + limit + ")"
	}
	return typed(codes.ResourceExhausted, ReasonQuotaExceeded, map[string]string{"resource": resource, "limit": limit},
		"%s: raise the quota with the cloud, or free some", msg)
}

// BadCredentials is the answer when the cloud refuses the runtime's
// credentials; why says what the cloud said, without the secret.
func BadCredentials(why string) error {
	return typed(codes.Unauthenticated, ReasonBadCredentials, nil,
		"the cloud refused the runtime's credentials (%s): update them on the runtime", why)
}

func typed(code codes.Code, reason string, meta map[string]string, format string, args ...any) error {
	st := status.New(code, fmt.Sprintf(format, args...))
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain, Metadata: meta}); err == nil {
		st = d
	}
	return st.Err()
}

// Reason is the ErrorInfo reason of a provider's typed error (NOT_FOUND,
// QUOTA_EXCEEDED, BAD_CREDENTIALS, CAPABILITY_MISSING), or "" for any
// other error.
func Reason(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return ""
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain {
			return info.GetReason()
		}
	}
	return ""
}
