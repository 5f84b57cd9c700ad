package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRPCError(t *testing.T) {
	h := hints{codes.NotFound: "list clusters with `hangar cluster list`"}
	tests := []struct {
		name string
		err  error
		want []string
		not  []string
	}{
		{
			name: "unreachable says to start pilot",
			err:  status.Error(codes.Unavailable, "connection refused"),
			want: []string{"get cluster cl-1:", "cannot reach pilot at 10.0.0.1:7400", "connection refused", "hangar up", "HANGAR_PILOT"},
		},
		{
			name: "hint for the code is added",
			err:  status.Error(codes.NotFound, `cluster "cl-1" not found`),
			want: []string{`get cluster cl-1: cluster "cl-1" not found; list clusters with`},
		},
		{
			name: "pilot's own suggestion is not doubled",
			err:  status.Error(codes.NotFound, "cluster cl-1 not found; `hangar cluster list` shows them"),
			want: []string{"`hangar cluster list` shows them"},
			not:  []string{"list clusters with"},
		},
		{
			name: "other codes keep pilot's message",
			err:  status.Error(codes.InvalidArgument, "env.port: 70000 is above max 65535"),
			want: []string{"get cluster cl-1: env.port: 70000 is above max 65535"},
			not:  []string{"rpc error", "hangar up"},
		},
		{
			name: "not a status error",
			err:  errors.New("boom"),
			want: []string{"get cluster cl-1: boom"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := rpcError("10.0.0.1:7400", "get cluster cl-1", tt.err, h)
			if !errors.Is(err, tt.err) {
				t.Errorf("error does not wrap the cause")
			}
			mustContain(t, "error", err.Error(), tt.want...)
			for _, n := range tt.not {
				if strings.Contains(err.Error(), n) {
					t.Errorf("error %q contains %q", err, n)
				}
			}
		})
	}
	if err := rpcError("a", "x", status.Error(codes.Canceled, "ctx"), nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled call: %v does not report context.Canceled", err)
	}
	if code := exitCode(fmt.Errorf("wrap: %w", &interruptedError{jobID: "j"})); code != exitInterrupted {
		t.Errorf("interrupted: exit %d, want %d", code, exitInterrupted)
	}
}
