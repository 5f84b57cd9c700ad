package main

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hangarhq/hangar/pilot/audit"
	"github.com/hangarhq/hangar/pilot/jobs"
)

func TestAuditRetentionFlags(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		want    audit.Retention
		wantErr string // a substring; "" means no error
	}{
		{"defaults: 90 days, 100000 per tenant", nil, audit.Retention{MaxAge: 2160 * time.Hour, MaxEntriesPerTenant: 100000}, ""},
		{"both set", []string{"--audit-max-age", "720h", "--audit-max-entries", "500"}, audit.Retention{MaxAge: 720 * time.Hour, MaxEntriesPerTenant: 500}, ""},
		{"zero is unlimited", []string{"--audit-max-age", "0", "--audit-max-entries", "0"}, audit.Retention{}, ""},
		{"negative age", []string{"--audit-max-age", "-1h"}, audit.Retention{}, "--audit-max-age -1h0m0s: must be 0"},
		{"negative count", []string{"--audit-max-entries", "-5"}, audit.Retention{}, "--audit-max-entries -5: must be 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _, err := parseArgs(append([]string{"--data-dir", t.TempDir()}, tc.args...), io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseArgs(%v) error = %v, want one containing %q", tc.args, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseArgs(%v): %v", tc.args, err)
			}
			if cfg.AuditRetention != tc.want {
				t.Errorf("parseArgs(%v).AuditRetention = %+v, want %+v", tc.args, cfg.AuditRetention, tc.want)
			}
		})
	}
}

func TestParseArgsUsageErrors(t *testing.T) {
	if _, _, err := parseArgs(nil, io.Discard); err == nil || !strings.Contains(err.Error(), "--data-dir") {
		t.Errorf("no --data-dir: %v", err)
	}
	if _, _, err := parseArgs([]string{"--bogus"}, io.Discard); !errors.Is(err, errUsage) {
		t.Errorf("unknown flag: %v, want errUsage", err)
	}
	var help strings.Builder
	if _, _, err := parseArgs([]string{"--help"}, &help); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"-audit-max-age", "0 keeps entries forever", "-audit-max-entries", "0 = no limit", "-max-cluster-nodes", "all roles together", "-metrics-token-file", "mode 0600"} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("--help does not say %q", want)
		}
	}
}

func TestMaxClusterNodesFlag(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		want    int
		wantErr string
	}{
		{nil, 1000, ""},
		{[]string{"--max-cluster-nodes", "50"}, 50, ""},
		{[]string{"--max-cluster-nodes", "4096"}, 4096, ""},
		{[]string{"--max-cluster-nodes", "4097"}, 0, "--max-cluster-nodes 4097: must be 1 to 4096"},
		{[]string{"--max-cluster-nodes", "-1"}, 0, "--max-cluster-nodes -1: must be 1 to 4096"},
	} {
		cfg, _, err := parseArgs(append([]string{"--data-dir", t.TempDir()}, tc.args...), io.Discard)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseArgs(%v) error = %v, want one containing %q", tc.args, err, tc.wantErr)
			}
			continue
		}
		if err != nil || cfg.MaxClusterNodes != tc.want {
			t.Errorf("parseArgs(%v) = %d, %v; want %d", tc.args, cfg.MaxClusterNodes, err, tc.want)
		}
	}
}

func TestEtcdHistoryFlag(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		want    time.Duration
		wantErr string
	}{
		{nil, 5 * time.Minute, ""},
		{[]string{"--etcd-history", "30s"}, 30 * time.Second, ""},
		{[]string{"--etcd-history", "1h"}, time.Hour, ""},
		{[]string{"--etcd-history", "2s"}, 0, "--etcd-history 2s: must be at least 10s"},
		{[]string{"--etcd-history", "0"}, 0, "--etcd-history 0s: must be at least 10s"},
	} {
		cfg, _, err := parseArgs(append([]string{"--data-dir", t.TempDir()}, tc.args...), io.Discard)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseArgs(%v) error = %v, want one containing %q", tc.args, err, tc.wantErr)
			}
			continue
		}
		if err != nil || cfg.EtcdHistory != tc.want {
			t.Errorf("parseArgs(%v) = %s, %v; want %s", tc.args, cfg.EtcdHistory, err, tc.want)
		}
	}
}

func TestJobRetentionFlags(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		want    jobs.Retention
		wantErr string
	}{
		{nil, jobs.Retention{MaxAge: 720 * time.Hour, MaxPerCluster: 100}, ""},
		{[]string{"--job-max-age", "0", "--job-max-per-cluster", "0"}, jobs.Retention{}, ""},
		{[]string{"--job-max-per-cluster", "10"}, jobs.Retention{MaxAge: 720 * time.Hour, MaxPerCluster: 10}, ""},
		{[]string{"--job-max-age", "-1h"}, jobs.Retention{}, "--job-max-age -1h0m0s: must be 0"},
		{[]string{"--job-max-per-cluster", "-3"}, jobs.Retention{}, "--job-max-per-cluster -3: must be 0 (no limit) or a positive number"},
	} {
		cfg, _, err := parseArgs(append([]string{"--data-dir", t.TempDir()}, tc.args...), io.Discard)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseArgs(%v) error = %v, want one containing %q", tc.args, err, tc.wantErr)
			}
			continue
		}
		if err != nil || cfg.JobRetention.MaxAge != tc.want.MaxAge || cfg.JobRetention.MaxPerCluster != tc.want.MaxPerCluster {
			t.Errorf("parseArgs(%v) = %+v, %v; want %+v", tc.args, cfg.JobRetention, err, tc.want)
		}
	}
}
