// Package providers is pilot's provider plugin host: it starts the plugin
// binary for a provider name (hangar-provider-<name> in the plugin dir) on
// first use, keeps one process per provider, restarts it if it exited, and
// stops them all on Close.
package providers

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sync"

	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/providers/sdk"
)

var validName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

// Host starts and keeps provider plugins.
type Host struct {
	dir string
	log *slog.Logger

	mu      sync.Mutex
	clients map[string]*sdk.Client
	// caps is each provider's Info, read once per plugin process (a
	// restarted plugin may be a new binary with other capabilities).
	caps map[string]cachedCaps
}

type cachedCaps struct {
	client *sdk.Client
	caps   sdk.Capabilities
}

// New returns a host looking for plugins in dir.
func New(dir string, log *slog.Logger) *Host {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Host{dir: dir, log: log, clients: map[string]*sdk.Client{}, caps: map[string]cachedCaps{}}
}

// Path is where the plugin binary for name is expected.
func (h *Host) Path(name string) string {
	return filepath.Join(h.dir, "hangar-provider-"+name)
}

// Get returns a client of the named provider, starting its plugin if needed.
func (h *Host) Get(ctx context.Context, name string) (providerv1.ProviderClient, error) {
	c, err := h.client(ctx, name)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Capabilities returns what the named provider declares in its Info, with
// its name (for the errors of Require). Info is asked once per plugin
// process.
func (h *Host) Capabilities(ctx context.Context, name string) (sdk.Capabilities, error) {
	c, err := h.client(ctx, name)
	if err != nil {
		return sdk.Capabilities{}, err
	}
	h.mu.Lock()
	cached, ok := h.caps[name]
	h.mu.Unlock()
	if ok && cached.client == c {
		return cached.caps, nil
	}
	info, err := c.Info(ctx, &providerv1.InfoRequest{})
	if err != nil {
		return sdk.Capabilities{}, fmt.Errorf("provider %q: info: %w", name, err)
	}
	caps := sdk.CapabilitiesOf(info)
	if caps.Provider == "" {
		caps.Provider = name
	}
	h.mu.Lock()
	h.caps[name] = cachedCaps{client: c, caps: caps}
	h.mu.Unlock()
	return caps, nil
}

// Require returns a *sdk.CapabilityMissingError (errors.Is
// sdk.ErrCapabilityMissing; FailedPrecondition as a gRPC status) when the
// named provider lacks one of caps, naming it and op, e.g. `runtime
// provider "local" lacks capability "snapshots" needed by backup
// (device)`. Pilot calls it before an operation changes anything. Other
// errors are the provider's (it could not be started or asked).
func (h *Host) Require(ctx context.Context, name, op string, caps ...string) error {
	c, err := h.Capabilities(ctx, name)
	if err != nil {
		return err
	}
	return c.Require(op, caps...)
}

// Unsupported turns a provider's answer to a call it does not implement
// (Unimplemented, from a provider lacking capability) into the
// *sdk.CapabilityMissingError Require gives; other errors are returned as
// they are. For the case Require could not foresee: a plugin replaced by
// an older one between the check and the call.
func Unsupported(err error, provider, capability, op string) error {
	return sdk.CapabilityError(err, provider, capability, op)
}

func (h *Host) client(ctx context.Context, name string) (*sdk.Client, error) {
	if !validName.MatchString(name) {
		return nil, fmt.Errorf("provider %q: a provider name is lowercase letters, digits and dashes", name)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if c, ok := h.clients[name]; ok && !c.Exited() {
		return c, nil
	} else if ok {
		h.log.Warn("provider plugin exited; restarting", "provider", name)
		c.Close()
		delete(h.clients, name)
	}
	path := h.Path(name)
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("provider %q: no plugin binary at %s (build it with `make build`): %w", name, path, err)
	}
	c, err := sdk.Start(ctx, path, h.log)
	if err != nil {
		return nil, fmt.Errorf("provider %q: %w", name, err)
	}
	h.clients[name] = c
	return c, nil
}

// Close stops every plugin process.
func (h *Host) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for name, c := range h.clients {
		c.Close()
		delete(h.clients, name)
		delete(h.caps, name)
	}
}
