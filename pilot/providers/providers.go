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
}

// New returns a host looking for plugins in dir.
func New(dir string, log *slog.Logger) *Host {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Host{dir: dir, log: log, clients: map[string]*sdk.Client{}}
}

// Path is where the plugin binary for name is expected.
func (h *Host) Path(name string) string {
	return filepath.Join(h.dir, "hangar-provider-"+name)
}

// Get returns a client of the named provider, starting its plugin if needed.
func (h *Host) Get(ctx context.Context, name string) (providerv1.ProviderClient, error) {
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
	}
}
