// Command frontgate runs Hangar's per-network agent: it keeps the stream to
// pilot, the network's cluster metadata in an embedded etcd, and the
// drones' streams. Pilot's providers start it with the instance's user
// data; see docs/frontgate.md.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/hangarhq/hangar/frontgate"
	"github.com/hangarhq/hangar/internal/logging"
	"github.com/hangarhq/hangar/internal/userdata"
)

// walSegmentBytes keeps a fresh frontgate's etcd directory small; the
// metadata of one network's clusters never needs etcd's 64 MB segments.
const walSegmentBytes = 4 << 20

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// After the first signal a second one kills at once, in case a graceful
	// stop hangs.
	context.AfterFunc(ctx, stop)
	cmd := newCommand(ctx, os.Stderr, os.Getenv)
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "frontgate:", err)
		stop()
		os.Exit(1)
	}
}

type options struct {
	userdata, dataDir, address, logFormat, metricsListen string
}

func newCommand(ctx context.Context, stderr io.Writer, getenv func(string) string) *cobra.Command {
	var o options
	defaultAddress := getenv("HANGAR_ADDRESS")
	if defaultAddress == "" {
		defaultAddress = "127.0.0.1"
	}
	cmd := &cobra.Command{
		Use:   "frontgate --userdata FILE --data-dir DIR",
		Short: "Hangar's agent for one network: pilot's link, cluster metadata and drone relay",
		Long: `A frontgate serves one network (VPC) that holds Hangar clusters. It dials out
to pilot and keeps one stream to it, so nothing inside the network has to be
reachable from outside. It keeps the metadata of the network's clusters in an
embedded etcd, which the drones' confd renderers watch, and it relays pilot's
requests (run a command, configure the renderer) to the drones, which dial in
to it.

Pilot creates a frontgate when the first cluster lands in a network and removes
it with the last one; its provider starts this command with the instance's user
data (frontgate_id, pilot_address, join_token, ca_pem). You rarely run it by
hand.

Identity: on first start the frontgate makes a key and exchanges the user
data's single-use join token for a certificate (pilot's EnrollmentService.Join,
over TLS trusting ca_pem); key, certificate and CA are kept in DIR/tls and
loaded on later starts. The certificate is renewed over the pilot stream at two
thirds of its lifetime. The join key is saved (DIR/tls/pending-key.pem) before
the first attempt, so a join whose answer was lost is retried with it, also
after a restart; a token used by another key, or expired, cannot be retried:
pilot must recreate the instance.

Listens on --address, every port TLS with the frontgate's certificate:
  9611  DroneLink gRPC (drones dial in; Connect needs the drone's certificate,
        Join a join token that pilot checks)
  2379  etcd clients (drones' confd; client certificate required, read-only
        per cluster)
  2380  etcd peers (client certificate required: the frontgate's own only)`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(ctx, o, stderr, getenv)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.userdata, "userdata", "", "user data JSON file (frontgate_id, pilot_address, join_token, ca_pem)")
	f.StringVar(&o.dataDir, "data-dir", "", "directory for the frontgate's state (etcd data in DIR/etcd, key and certificates in DIR/tls)")
	f.StringVar(&o.address, "address", defaultAddress, "IP address to listen on; defaults to $HANGAR_ADDRESS when set")
	f.StringVar(&o.logFormat, "log-format", "", "log format: text or json (default text on a terminal, json otherwise)")
	f.StringVar(&o.metricsListen, "metrics-listen", "", "host:port serving Prometheus /metrics (off when empty)")
	_ = cmd.MarkFlagRequired("userdata")
	_ = cmd.MarkFlagRequired("data-dir")
	return cmd
}

func run(ctx context.Context, o options, stderr io.Writer, getenv func(string) string) error {
	log, err := logging.New(o.logFormat, stderr)
	if err != nil {
		return err
	}
	ip := net.ParseIP(o.address)
	if ip == nil {
		return fmt.Errorf("--address %q: an IP address is required, such as 127.10.1.2", o.address)
	}
	ud, err := userdata.ReadFrontgate(o.userdata)
	if err != nil {
		return fmt.Errorf("--userdata %s: %w", o.userdata, err)
	}
	dataDir, err := filepath.Abs(o.dataDir)
	if err != nil {
		return fmt.Errorf("--data-dir %q: %w", o.dataDir, err)
	}
	if id := getenv("HANGAR_INSTANCE_ID"); id != "" {
		log = log.With("instance_id", id)
	}

	hostPort := func(port int) string { return net.JoinHostPort(ip.String(), strconv.Itoa(port)) }
	fg, err := frontgate.Start(ctx, frontgate.Config{
		FrontgateID:     ud.FrontgateID,
		PilotAddress:    ud.PilotAddress,
		JoinToken:       ud.JoinToken,
		CAPEM:           []byte(ud.CAPEM),
		DataDir:         dataDir,
		EtcdClientURL:   "https://" + hostPort(userdata.FrontgateEtcdPort),
		EtcdPeerURL:     "https://" + hostPort(userdata.FrontgatePeerPort),
		DroneListen:     hostPort(userdata.FrontgateDronePort),
		MetricsListen:   o.metricsListen,
		WALSegmentBytes: walSegmentBytes,
		Version:         version(),
		Logger:          log,
	})
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		log.Info("stopping on signal")
		fg.Stop()
		return nil
	case <-fg.Failed():
		fg.Stop()
		return fg.Err()
	}
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
