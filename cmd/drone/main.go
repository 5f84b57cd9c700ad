// Command drone is Hangar's agent inside every app instance. It connects to
// the frontgate of its network, runs the lifecycle commands pilot sends
// (each at most once), and keeps the app's config files rendered from the
// cluster metadata with confd templates. Providers start it with the
// instance's user data; it is not meant to be run by hand. On its first
// start it exchanges the user data's join token for its certificate; from
// then on every connection (the frontgate's stream and its etcd) is mutual
// TLS with that certificate.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hangarhq/hangar/drone"
	"github.com/hangarhq/hangar/drone/executor/supervise"
	"github.com/hangarhq/hangar/drone/initproc"
	"github.com/hangarhq/hangar/internal/userdata"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"

const defaultConfdDir = "/etc/confd"

// initGrace is how long the app's processes get to exit after SIGTERM when
// the drone, as a container's init, stops; Docker's own stop grace is 10s,
// so the provider gives its stops more than this.
const initGrace = 8 * time.Second

// errReported is a usage error already shown to the user.
var errReported = errors.New("usage error")

const usageText = `drone - Hangar's agent in every app instance

The drone connects to the frontgate of its network and serves it: it runs
the app's lifecycle commands (init, start, stop, custom services, ...) at
most once per command id, with a timeout, recording every result on disk;
and it renders the app's configuration files from the cluster's metadata
with confd templates, re-rendering and running their reload commands
whenever the metadata changes.

A provider starts the drone when it creates an instance, passing the user
data pilot wrote for it (cluster id, node id, the frontgate's addresses, a
single-use join token and pilot's CA certificate). On the first start the
drone makes a key and exchanges the token for its certificate through the
frontgate; it keeps them in <data-dir>/tls and renews the certificate
before it expires. The key is saved before the first attempt, so a join
whose answer was lost (a cut stream, a restart) is retried with it and
succeeds; the token refuses any other key.

  drone --userdata <file> --data-dir <dir> [flags]

Flags:
`

type options struct {
	userdata  string
	dataDir   string
	root      string
	confdDir  string
	logFormat string
	logLevel  string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == supervise.Arg {
		// One command's supervisor (drone/executor/supervise), started by
		// a drone shipped without hangar-supervise beside it.
		os.Exit(supervise.Main(os.Args[2:]))
	}
	if initproc.Needed() {
		// The container's entrypoint: be its init and run the drone as
		// its child (drone/initproc).
		os.Exit(initproc.Run(initGrace, os.Stderr))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

// parse reads the command line. It returns a nil error and nil options for
// --help.
func parse(args []string, stderr io.Writer) (*options, error) {
	var o options
	fs := flag.NewFlagSet("drone", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.userdata, "userdata", "", "`file` with the instance's user data (JSON: cluster_id, node_id, frontgate_address, etcd_endpoints, join_token, ca_pem); required")
	fs.StringVar(&o.dataDir, "data-dir", "", "`dir` for the drone's state: its certificate (tls/), command records, cmd.log, delivered confd files; required")
	fs.StringVar(&o.root, "root", os.Getenv("HANGAR_ROOT"), "the instance's filesystem root `dir`: commands and reload commands run there and template destinations are placed under it (default $HANGAR_ROOT, else /)")
	fs.StringVar(&o.confdDir, "confd-dir", defaultConfdDir, "`dir` of confd templates baked into the image (conf.d/, templates/), used until templates are delivered; taken under --root unless given")
	fs.StringVar(&o.logFormat, "log-format", "", "log format: text or json (default json, or text when stderr is a terminal)")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, nil
		}
		// The flag package has already printed the error and the usage.
		return nil, errReported
	}
	confdGiven := false
	fs.Visit(func(f *flag.Flag) { confdGiven = confdGiven || f.Name == "confd-dir" })
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected argument %q: the drone takes flags only", fs.Arg(0))
	case o.userdata == "":
		return nil, errors.New("--userdata is required")
	case o.dataDir == "":
		return nil, errors.New("--data-dir is required")
	case o.logFormat != "" && o.logFormat != "text" && o.logFormat != "json":
		return nil, fmt.Errorf("--log-format %q: allowed values are text and json", o.logFormat)
	}
	if _, err := parseLevel(o.logLevel); err != nil {
		return nil, err
	}
	// Resolve paths now: the drone changes its directory to the root.
	for _, p := range []*string{&o.userdata, &o.dataDir, &o.root, &o.confdDir} {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return nil, fmt.Errorf("path %q: %w", *p, err)
		}
		*p = abs
	}
	if o.root != "" && !confdGiven {
		// On the local runtime the root dir is the instance's image.
		o.confdDir = filepath.Join(o.root, defaultConfdDir)
	}
	return &o, nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level %q: allowed values are debug, info, warn and error", s)
	}
	return l, nil
}

func newLogger(o *options, w io.Writer) *slog.Logger {
	lvl, _ := parseLevel(o.logLevel)
	hopts := &slog.HandlerOptions{Level: lvl}
	format := o.logFormat
	if format == "" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				format = "text"
			}
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, hopts))
	}
	return slog.New(slog.NewJSONHandler(w, hopts))
}

// run is the drone's life: it returns the process exit code.
func run(ctx context.Context, args []string, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if err != nil {
		if !errors.Is(err, errReported) {
			fmt.Fprintf(stderr, "drone: %v\nRun 'drone --help' for usage.\n", err)
		}
		return 2
	}
	if o == nil {
		return 0
	}
	log := newLogger(o, stderr)
	if err := serve(ctx, o, log); err != nil {
		log.Error("drone failed", "err", err)
		return 1
	}
	log.Info("drone stopped")
	return 0
}

func serve(ctx context.Context, o *options, log *slog.Logger) error {
	ud, err := userdata.ReadDrone(o.userdata)
	if err != nil {
		return err
	}
	if o.root != "" {
		// confd runs reload and check commands in the drone's own working
		// directory, which must be the instance's root.
		if err := os.Chdir(o.root); err != nil {
			return fmt.Errorf("change to the root dir: %w", err)
		}
	}
	// Each command runs under a supervisor, so its result survives this
	// process being killed: hangar-supervise beside this binary (it
	// starts in a few milliseconds), else this binary again.
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the drone's own binary for command supervisors: %w", err)
	}
	return drone.Run(ctx, drone.Config{
		UserData:   ud,
		DataDir:    o.dataDir,
		Root:       o.root,
		ConfdDir:   o.confdDir,
		Supervisor: supervise.Command(self),
		Version:    version,
		Logger:     log,
	})
}
