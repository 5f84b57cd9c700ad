package main

import (
	"bytes"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/hangarhq/hangar/providers/local"
	"github.com/hangarhq/hangar/providers/sdk"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestCLI(t *testing.T) {
	tests := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{args: []string{"--help"}, code: 0, stdout: "started by pilot, not by hand"},
		{args: []string{"-h"}, code: 0, stdout: "root_dir"},
		{args: []string{"--version"}, code: 0, stdout: "0."},
		{args: []string{"serve"}, code: 2, stderr: `unknown argument "serve"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := sdk.HandleArgs("hangar-provider-local", local.Version, usage, tt.args, &out, &errb); code != tt.code {
				t.Errorf("exit code %d, want %d", code, tt.code)
			}
			if !strings.Contains(out.String(), tt.stdout) || !strings.Contains(errb.String(), tt.stderr) {
				t.Errorf("stdout %q / stderr %q; want %q / %q", out.String(), errb.String(), tt.stdout, tt.stderr)
			}
		})
	}
}
