package clusterops

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hangarhq/hangar/pilot/jobs"
	"github.com/hangarhq/hangar/providers/sdk"
)

// What a provider answered decides whether the task is retried: a passing
// trouble is, a refusal a retry cannot change is not.
func TestProviderErrRetries(t *testing.T) {
	for _, tc := range []struct {
		name  string
		err   error
		retry bool
	}{
		{"unavailable", status.Error(codes.Unavailable, "connection reset"), true},
		{"rate limited", status.Error(codes.ResourceExhausted, "slow down"), true},
		{"quota", sdk.QuotaExceeded("cpus", "16"), false},
		{"bad credentials", sdk.BadCredentials("expired"), false},
		{"not found", sdk.NotFound("network", "net-1"), false},
		{"invalid", status.Error(codes.InvalidArgument, "image"), false},
	} {
		err := providerErr("run instance", tc.err)
		if got := jobs.IsRetryable(err); got != tc.retry {
			t.Errorf("%s: retried %v, want %v (%v)", tc.name, got, tc.retry, err)
		}
	}
}
