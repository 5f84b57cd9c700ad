package sdk

import (
	"fmt"
	"sort"
	"strings"
)

// Capabilities a provider may list in its Info response. Pilot acts on
// these; any other string is informational ("networks", "instances").
const (
	// CapRunsOnPilotHost says the provider's instances run on the host
	// pilot runs on (as processes, containers of its daemon, ...). Pilot
	// then lets only platform admins (admins of tenant "default") create
	// its runtimes: whatever an instance can reach on that host, its
	// runtime's creator could reach too.
	CapRunsOnPilotHost = "runs_on_pilot_host"
	// CapHostDirPrefix + KEY says runtime config KEY names a directory of
	// pilot's host the provider uses for the runtime (e.g. binaries its
	// instances run). Pilot refuses one that overlaps its own data
	// directory, or an exclusive directory of another runtime.
	CapHostDirPrefix = "host_dir:"
	// CapExclusiveHostDirPrefix + KEY is a host directory that belongs to
	// the runtime alone (where its instances live): pilot also refuses one
	// that overlaps any host directory of another runtime.
	CapExclusiveHostDirPrefix = "exclusive_host_dir:"
	// CapStopStart says the provider implements StopInstance and
	// StartInstance: pilot stops and starts clusters only on runtimes
	// whose provider has it.
	CapStopStart = "stop_start"
	// CapResize says the provider implements ResizeInstance: pilot
	// resizes clusters (vertical scaling) only on runtimes that have it.
	CapResize = "resize"
)

// Capabilities is what pilot reads from an Info response.
type Capabilities struct {
	// RunsOnPilotHost is CapRunsOnPilotHost.
	RunsOnPilotHost bool
	// HostDirs maps each runtime config key naming a host directory to
	// whether that directory is exclusive to the runtime.
	HostDirs map[string]bool
	// StopStart is CapStopStart.
	StopStart bool
	// Resize is CapResize.
	Resize bool
}

// ParseCapabilities reads the capabilities pilot acts on.
func ParseCapabilities(caps []string) Capabilities {
	c := Capabilities{HostDirs: map[string]bool{}}
	for _, s := range caps {
		switch {
		case s == CapRunsOnPilotHost:
			c.RunsOnPilotHost = true
		case s == CapStopStart:
			c.StopStart = true
		case s == CapResize:
			c.Resize = true
		case strings.HasPrefix(s, CapExclusiveHostDirPrefix) && len(s) > len(CapExclusiveHostDirPrefix):
			c.HostDirs[strings.TrimPrefix(s, CapExclusiveHostDirPrefix)] = true
		case strings.HasPrefix(s, CapHostDirPrefix) && len(s) > len(CapHostDirPrefix):
			if k := strings.TrimPrefix(s, CapHostDirPrefix); !c.HostDirs[k] {
				// Exclusive wins when a key is listed both ways.
				c.HostDirs[k] = false
			}
		}
	}
	return c
}

// HostDirKeys returns the keys of HostDirs, sorted.
func (c Capabilities) HostDirKeys() []string {
	keys := make([]string, 0, len(c.HostDirs))
	for k := range c.HostDirs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// CapabilityMissingError is an operation refused because the runtime's
// provider lacks a capability it needs; pilot refuses before anything
// changes.
type CapabilityMissingError struct {
	Provider, Capability, Operation string
}

func (e *CapabilityMissingError) Error() string {
	return fmt.Sprintf("runtime provider %q lacks capability %q, which %s needs", e.Provider, e.Capability, e.Operation)
}
