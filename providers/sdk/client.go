package sdk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/internal/limits"
)

// defaultStartTimeout bounds the plugin handshake when ctx has no deadline.
const defaultStartTimeout = time.Minute

// Client is a running provider plugin process and the gRPC client talking to
// it. Close it when done: the process lives until then.
type Client struct {
	providerv1.ProviderClient

	pc        *plugin.Client
	stdout    *lineLogger
	stderr    *lineLogger
	closeOnce sync.Once
}

// Start launches the plugin binary at path, performs the go-plugin handshake
// (gRPC protocol, automatic mutual TLS) and returns a connected client. ctx
// concerns the start-up only: its deadline bounds the handshake (one minute
// without a deadline), cancellation is checked before and after it, and the
// plugin keeps running after ctx ends, until Close. Everything the plugin logs or writes to stderr/stdout goes to logger,
// tagged with provider=<binary name> (go-plugin itself uses "plugin" for the
// binary's path).
func Start(ctx context.Context, path string, logger *slog.Logger) (*Client, error) {
	if path == "" {
		return nil, errors.New("start provider plugin: path is required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start provider plugin %s: %w", path, err)
	}
	timeout := defaultStartTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
		if timeout <= 0 {
			return nil, fmt.Errorf("start provider plugin %s: %w", path, context.DeadlineExceeded)
		}
	}

	base := filepath.Base(path)
	plog := logger.With("provider", base)
	c := &Client{
		stdout: newLineLogger(plog, "stdout"),
		stderr: newLineLogger(plog, "stderr"),
	}
	c.pc = plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  Handshake,
		Plugins:          plugin.PluginSet{PluginName: &grpcPlugin{}},
		Cmd:              exec.Command(path),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		// AutoMTLS: only this pilot process can call the plugin, even though
		// it listens on a socket other local users might reach.
		AutoMTLS:        true,
		GRPCDialOptions: limits.GRPCDialOptions(),
		StartTimeout:    timeout,
		Logger:          newHCLogger(plog, base),
		// Without these, go-plugin discards whatever the plugin writes to its
		// os.Stdout/os.Stderr after Serve (they are relayed over gRPC).
		SyncStdout: c.stdout,
		SyncStderr: c.stderr,
	})

	rpc, err := c.pc.Client()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("start provider plugin %s: %w", path, err)
	}
	if err := ctx.Err(); err != nil {
		c.Close()
		return nil, fmt.Errorf("start provider plugin %s: %w", path, err)
	}
	raw, err := rpc.Dispense(PluginName)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("start provider plugin %s: dispense %q: %w", path, PluginName, err)
	}
	pc, ok := raw.(providerv1.ProviderClient)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("start provider plugin %s: dispensed %T, not a provider client", path, raw)
	}
	c.ProviderClient = pc
	return c, nil
}

// Close shuts the plugin down (gracefully, then by kill) and waits for its
// process to end. Processes the plugin started on its own behalf (for
// example the local provider's instances) are not affected. Safe to call more
// than once.
func (c *Client) Close() {
	c.closeOnce.Do(func() {
		c.pc.Kill()
		c.stdout.Flush()
		c.stderr.Flush()
	})
}

// Exited reports whether the plugin process has ended, whether by Close or on
// its own (a crash). A client whose plugin exited must be replaced.
func (c *Client) Exited() bool {
	return c.pc.Exited()
}
