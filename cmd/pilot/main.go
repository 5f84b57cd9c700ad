// Command pilot is Hangar's hub: the API, the job engine, the provider plugin
// host and the server end of every frontgate stream. Most people start it
// with `hangar up`; run it directly to choose its addresses and data dir.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hangarhq/hangar/internal/limits"
	"github.com/hangarhq/hangar/internal/logging"
	"github.com/hangarhq/hangar/pilot/audit"
	"github.com/hangarhq/hangar/pilot/clusterops"
	"github.com/hangarhq/hangar/pilot/jobs"
	"github.com/hangarhq/hangar/pilot/server"
)

const usage = `pilot: the Hangar hub.

It keeps its state in etcd (embedded under --data-dir unless --etcd-endpoints
names an external cluster), serves the API over gRPC on --listen and as
REST/JSON on --http-listen (with /metrics and /healthz), runs jobs, and starts
provider plugins (hangar-provider-<name>) from --plugin-dir. Frontgates dial
--advertise-address.

Every port is TLS. Pilot runs the CA (DATA-DIR/ca) that certifies frontgates
and drones; API calls need a user token. On first start pilot creates user
"admin" (tenant "default") and writes its token to DATA-DIR/admin.token,
which the hangar CLI reads. /metrics is for admins of tenant "default" and
for the scrape token of --metrics-token-file. A cluster has at most
--max-cluster-nodes nodes. See docs/security.md and docs/pilot.md.

Usage:
  pilot --data-dir DIR [flags]

Example:
  pilot --data-dir ~/.hangar/pilot --listen 127.0.0.1:7400 --http-listen 127.0.0.1:7401

Flags:
`

func main() {
	cfg, logFormat, err := parseArgs(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "pilot:", err)
		}
		os.Exit(2)
	}
	log, err := logging.New(logFormat, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pilot:", err)
		os.Exit(2)
	}
	cfg.Logger = log
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := server.Run(ctx, cfg); err != nil {
		log.Error("pilot failed", "err", err)
		os.Exit(1)
	}
}

// errUsage is a flag the flag package has already reported, with usage.
var errUsage = errors.New("bad flags")

// parseArgs turns pilot's command line into its configuration and log
// format; usage and flag errors go to out.
func parseArgs(args []string, out io.Writer) (server.Config, string, error) {
	fs := flag.NewFlagSet("pilot", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() { fmt.Fprint(fs.Output(), usage); fs.PrintDefaults() }
	dataDir := fs.String("data-dir", "", "directory for pilot's etcd, CA and keys (required); local runtimes default to DIR-runtimes next to it")
	listen := fs.String("listen", "127.0.0.1:7400", "gRPC API and frontgate link address")
	httpListen := fs.String("http-listen", "127.0.0.1:7401", "REST gateway, /metrics and /healthz address")
	advertise := fs.String("advertise-address", "", "address frontgates dial (default: the --listen address)")
	etcd := fs.String("etcd-endpoints", "", "comma-separated external etcd endpoints (default: embedded etcd)")
	pluginDir := fs.String("plugin-dir", "", "directory of provider plugins and agent binaries (default: this binary's directory)")
	logFormat := fs.String("log-format", "", "text or json (default: text on a terminal, json otherwise)")
	certTTL := fs.Duration("cert-ttl", 24*time.Hour, "lifetime of the certificates pilot's CA issues (renewed at 2/3)")
	secretKeyFile := fs.String("secret-key-file", "", "master key for secrets at rest (default: $HANGAR_SECRET_KEY, else DATA-DIR/secret.key, created on first start)")
	auditMaxAge := fs.Duration("audit-max-age", audit.DefaultMaxAge,
		"delete audit log entries older than this, checked at start and then hourly (the default 2160h is 90 days); 0 keeps entries forever")
	auditMaxEntries := fs.Int("audit-max-entries", audit.DefaultMaxEntriesPerTenant,
		"per tenant, keep only the newest this many audit log entries and delete older ones, checked at start and then hourly; 0 = no limit")
	metricsTokenFile := fs.String("metrics-token-file", "",
		"file holding a token (32+ characters, mode 0600) that opens /metrics to a scraper as \"Authorization: Bearer <token>\"; without it only admins of tenant default may read /metrics")
	maxNodes := fs.Int("max-cluster-nodes", limits.DefaultMaxClusterNodes,
		fmt.Sprintf("the most nodes one cluster may have, all roles together; a create asking for more is refused, naming the count parameter (at most %d)", limits.MaxClusterNodesCeiling))
	etcdHistory := fs.Duration("etcd-history", server.DefaultEtcdHistory,
		"how long the embedded etcd keeps old values before compacting them (pilot's own watches need seconds; a longer history is memory and disk that grow with every job run); ignored with --etcd-endpoints, whose own compaction applies")
	jobMaxAge := fs.Duration("job-max-age", jobs.DefaultMaxAge,
		"delete ended jobs (with their node results) older than this, checked every minute (the default 720h is 30 days); 0 keeps them forever. Each cluster's last job is always kept")
	jobMaxPerCluster := fs.Int("job-max-per-cluster", jobs.DefaultMaxPerCluster,
		"per cluster, keep only the newest this many jobs and delete older ended ones, checked every minute; 0 = no limit. Pilot's memory grows with the jobs kept: a job on N nodes keeps N results")
	guardPercent := fs.Int("recovery-max-down-percent", clusterops.DefaultMaxDownPercent,
		"the meltdown guard of each runtime: no node on a runtime is replaced automatically (clusters with recovery on) while more than this percent of its nodes are down, unless fewer than --recovery-min-down are; each cluster's own guard is in its recovery policy")
	guardMin := fs.Int("recovery-min-down", clusterops.DefaultMinDown,
		"see --recovery-max-down-percent: with fewer nodes than this down, the runtime's guard never holds")
	autoscaleEvery := fs.Duration("autoscale-interval", 5*time.Second,
		"how often clusters' autoscaling policies sample their metric and decide (hangar cluster autoscale); a policy's window should hold several intervals")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return server.Config{}, "", err
		}
		return server.Config{}, "", errUsage
	}
	if *dataDir == "" {
		return server.Config{}, "", errors.New("--data-dir is required (try --help)")
	}
	retention, err := auditRetention(*auditMaxAge, *auditMaxEntries)
	if err != nil {
		return server.Config{}, "", err
	}
	if *etcdHistory < 10*time.Second {
		return server.Config{}, "", fmt.Errorf("--etcd-history %s: must be at least 10s (etcd compacts at most this often, and pilot's watches resume from revisions read a moment before)", *etcdHistory)
	}
	jobRetention := jobs.Retention{MaxAge: *jobMaxAge, MaxPerCluster: *jobMaxPerCluster}
	if *jobMaxAge < 0 {
		return server.Config{}, "", fmt.Errorf("--job-max-age %s: must be 0 (keep jobs forever) or a positive duration such as 720h", *jobMaxAge)
	}
	if *jobMaxPerCluster < 0 {
		return server.Config{}, "", fmt.Errorf("--job-max-per-cluster %d: must be 0 (no limit) or a positive number of jobs", *jobMaxPerCluster)
	}
	if *autoscaleEvery < time.Second || *autoscaleEvery > 10*time.Minute {
		return server.Config{}, "", fmt.Errorf("--autoscale-interval %s: give 1s to 10m", *autoscaleEvery)
	}
	if *guardPercent < 1 || *guardPercent > 100 {
		return server.Config{}, "", fmt.Errorf("--recovery-max-down-percent %d: give 1 to 100", *guardPercent)
	}
	if *guardMin < 1 {
		return server.Config{}, "", fmt.Errorf("--recovery-min-down %d: give 1 or more (1: the percentage alone decides)", *guardMin)
	}
	if err := server.ValidateMaxClusterNodes(*maxNodes); err != nil {
		return server.Config{}, "", err
	}
	var endpoints []string
	if *etcd != "" {
		endpoints = strings.Split(*etcd, ",")
	}
	return server.Config{
		DataDir: *dataDir, Listen: *listen, HTTPListen: *httpListen, AdvertiseAddress: *advertise,
		EtcdEndpoints: endpoints, PluginDir: *pluginDir, CertTTL: *certTTL, SecretKeyFile: *secretKeyFile,
		AuditRetention: retention, MaxClusterNodes: *maxNodes, MetricsTokenFile: *metricsTokenFile,
		EtcdHistory: *etcdHistory, JobRetention: jobRetention,
		RecoveryMaxDownPercent: *guardPercent, RecoveryMinDown: *guardMin, AutoscaleInterval: *autoscaleEvery,
	}, *logFormat, nil
}

// auditRetention checks the retention flags, naming the one that is wrong.
func auditRetention(maxAge time.Duration, maxEntries int) (audit.Retention, error) {
	if maxAge < 0 {
		return audit.Retention{}, fmt.Errorf("--audit-max-age %s: must be 0 (keep entries forever) or a positive duration such as 720h", maxAge)
	}
	if maxEntries < 0 {
		return audit.Retention{}, fmt.Errorf("--audit-max-entries %d: must be 0 (no limit) or a positive number of entries per tenant", maxEntries)
	}
	return audit.Retention{MaxAge: maxAge, MaxEntriesPerTenant: maxEntries}, nil
}
