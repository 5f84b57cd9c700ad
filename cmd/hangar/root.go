package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/hangarhq/hangar/api/pilotv1"
)

const (
	defaultPilotAddr = "127.0.0.1:7400"
	envPilotAddr     = "HANGAR_PILOT"
	// rpcTimeout bounds every unary call; streams (job watch) are bounded by
	// the job instead.
	rpcTimeout = 30 * time.Second
)

// cli is the state of one invocation: the global flags and the lazily opened
// connection to pilot, shared by the command that runs.
type cli struct {
	env
	pilotAddr  string
	tokenFlag  string
	caFlag     string
	outputFlag string
	verbose    bool
	format     outputFormat
	logLevel   *slog.LevelVar
	logger     *slog.Logger
	conn       *grpc.ClientConn
	pilot      *pilotClients
}

// pilotClients are the services of pilot's API on one connection.
type pilotClients struct {
	apps     pilotv1.AppServiceClient
	runtimes pilotv1.RuntimeServiceClient
	clusters pilotv1.ClusterServiceClient
	jobs     pilotv1.JobServiceClient
	users    pilotv1.UserServiceClient
	audit    pilotv1.AuditServiceClient
	security pilotv1.SecurityServiceClient
}

func newPilotClients(conn grpc.ClientConnInterface) *pilotClients {
	return &pilotClients{
		apps:     pilotv1.NewAppServiceClient(conn),
		runtimes: pilotv1.NewRuntimeServiceClient(conn),
		clusters: pilotv1.NewClusterServiceClient(conn),
		jobs:     pilotv1.NewJobServiceClient(conn),
		users:    pilotv1.NewUserServiceClient(conn),
		audit:    pilotv1.NewAuditServiceClient(conn),
		security: pilotv1.NewSecurityServiceClient(conn),
	}
}

func newCLI(e env) *cli {
	level := new(slog.LevelVar)
	level.Set(slog.LevelWarn)
	return &cli{env: e, logLevel: level, logger: newLogger(e.stderr, level)}
}

// clients dials pilot on first use, so commands that never talk to it (help,
// down) do not need a reachable address.
func (c *cli) clients() (*pilotClients, error) {
	if c.pilot != nil {
		return c.pilot, nil
	}
	sec, err := c.security("")
	if err != nil {
		return nil, err
	}
	conn, err := dialPilot(c.pilotAddr, sec)
	if err != nil {
		return nil, err
	}
	c.conn = conn
	c.pilot = newPilotClients(conn)
	return c.pilot, nil
}

func (c *cli) close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn, c.pilot = nil, nil
	}
}

// callCtx bounds one unary call.
func callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, rpcTimeout)
}

// call opens the API clients and bounds ctx by one call's timeout: what
// every command does before its request.
func (c *cli) call(ctx context.Context) (*pilotClients, context.Context, context.CancelFunc, error) {
	cl, err := c.clients()
	if err != nil {
		return nil, ctx, func() {}, err
	}
	ctx, cancel := callCtx(ctx)
	return cl, ctx, cancel, nil
}

func newRootCmd(c *cli) *cobra.Command {
	defaultAddr := defaultPilotAddr
	if v := strings.TrimSpace(c.getenv(envPilotAddr)); v != "" {
		defaultAddr = v
	}
	root := &cobra.Command{
		Use:   "hangar",
		Short: "Deploy and run app clusters with Hangar",
		Long: `hangar is the command-line client of Hangar, which deploys app clusters
(AppCenter-format app packages: a Redis primary with replicas, a MariaDB pair,
a ZooKeeper ensemble...) on runtimes such as this machine or a cloud.

Every command talks to pilot, Hangar's hub, over gRPC with TLS at --pilot (or
the HANGAR_PILOT environment variable). 'hangar up' starts a pilot on this
machine together with the "local" runtime, so a first cluster needs no cloud
account.

Pilot's certificate is checked against --ca (or HANGAR_CA; default
~/.hangar/pilot/ca/ca.crt, which 'hangar up' creates), and every call carries
the API token from --token (or HANGAR_TOKEN; default the first admin's token
in ~/.hangar/pilot/admin.token). An admin creates more users with
'hangar user create'.

Changes to clusters run as jobs inside pilot; add --wait to follow one live,
or run 'hangar job watch ID' at any time. With -o json, commands print pilot's
API responses as JSON for scripts (job watch prints one JSON object per line).`,
		Example: `  # Start pilot and the local runtime on this machine
  hangar up

  # Store an app package and deploy it here, following the job live
  hangar app push ./examples/redis
  hangar cluster create redis --param env.maxmemory=256 --wait

  # Talk to a pilot elsewhere with your own token, and print JSON for a script
  export HANGAR_PILOT=10.0.0.5:7400 HANGAR_CA=./pilot-ca.crt
  HANGAR_TOKEN=hgt_... hangar cluster list -o json`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			f, err := parseOutputFormat(c.outputFlag)
			if err != nil {
				return err
			}
			c.format = f
			if c.verbose {
				c.logLevel.Set(slog.LevelDebug)
			}
			return nil
		},
	}
	root.SetOut(c.stdout)
	root.SetErr(c.stderr)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return fmt.Errorf("%w (run '%s --help' for usage)", err, cmd.CommandPath())
	})
	pf := root.PersistentFlags()
	pf.StringVar(&c.pilotAddr, "pilot", defaultAddr, "pilot's gRPC address, HOST:PORT (env "+envPilotAddr+")")
	// Neither default is read here: the help must never print a token.
	pf.StringVar(&c.tokenFlag, "token", "", "API token (env "+envToken+"; default: the token in ~/.hangar/pilot/admin.token)")
	pf.StringVar(&c.caFlag, "ca", "", "CA certificate that signed pilot's (env "+envCA+"; default: ~/.hangar/pilot/ca/ca.crt)")
	pf.StringVarP(&c.outputFlag, "output", "o", "text", "output format: text or json")
	pf.BoolVarP(&c.verbose, "verbose", "v", false, "log diagnostics (connection retries...) to stderr")

	root.AddCommand(
		newUpCmd(c),
		newDownCmd(c),
		newAppCmd(c),
		newRuntimeCmd(c),
		newImageCmd(c),
		newProviderCmd(c),
		newClusterCmd(c),
		newJobCmd(c),
		newUserCmd(c),
		newWhoAmICmd(c),
		newAuditCmd(c),
		newRevokeCmd(c),
	)
	return root
}

// groupRunE makes a command group (app, cluster...) print its help when run
// alone and reject unknown subcommands, which cobra otherwise answers with
// the help text and success.
func groupRunE(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unknown command %q for %q (run '%s --help' to list its commands)", args[0], cmd.CommandPath(), cmd.CommandPath())
	}
	return cmd.Help()
}
