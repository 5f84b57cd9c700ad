// Package kv implements hangar-kv, the small replicated key-value HTTP
// service that Hangar's example app package deploys: the server (one
// primary, any number of replicas pulling from it) and the process control
// commands (start, stop, reload, check) that the package's lifecycle
// services and confd's reload_cmd call. It depends on the standard library
// only, so the demo workload never drifts with Hangar's own dependencies.
package kv

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
)

// Roles a server can take.
const (
	RolePrimary = "primary"
	RoleReplica = "replica"
)

// Config is the content of a hangar-kv config file: `key = value` lines,
// blank lines and lines starting with '#' ignored.
type Config struct {
	Role    string // primary or replica
	Listen  string // ip:port the HTTP server binds
	Primary string // ip:port of the primary; required for replicas
	MOTD    string // shown in /status, changeable at run time
}

// configKeys lists the keys a config file may hold, for error messages.
const configKeys = "role, listen, primary, motd"

// ParseConfig reads a config from r and validates it. Unknown keys are
// rejected so that a typo in a template does not silently fall back to a
// default.
func ParseConfig(r io.Reader) (Config, error) {
	var c Config
	seen := make(map[string]int)
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		key, value, ok := strings.Cut(text, "=")
		if !ok {
			return Config{}, fmt.Errorf("line %d: want `key = value`, got %q", line, text)
		}
		key = strings.TrimSpace(key)
		value = strings.TrimSpace(value)
		if prev, dup := seen[key]; dup {
			return Config{}, fmt.Errorf("line %d: key %q already set on line %d", line, key, prev)
		}
		seen[key] = line
		switch key {
		case "role":
			c.Role = value
		case "listen":
			c.Listen = value
		case "primary":
			c.Primary = value
		case "motd":
			c.MOTD = value
		default:
			return Config{}, fmt.Errorf("line %d: unknown key %q (allowed: %s)", line, key, configKeys)
		}
	}
	if err := sc.Err(); err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// LoadConfig reads and validates the config file at path.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("load config: %w", err)
	}
	c, err := ParseConfig(bytes.NewReader(b))
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch c.Role {
	case RolePrimary, RoleReplica:
	case "":
		return errors.New("role is required (allowed: primary, replica)")
	default:
		return fmt.Errorf("role %q is not allowed (allowed: primary, replica)", c.Role)
	}
	if c.Listen == "" {
		return errors.New("listen is required (ip:port)")
	}
	if err := checkHostPort(c.Listen, true); err != nil {
		return fmt.Errorf("listen %q: %w", c.Listen, err)
	}
	if c.Role == RoleReplica && c.Primary == "" {
		return errors.New("primary is required for a replica (ip:port of the primary)")
	}
	if c.Primary != "" {
		if err := checkHostPort(c.Primary, false); err != nil {
			return fmt.Errorf("primary %q: %w", c.Primary, err)
		}
	}
	return nil
}

// checkHostPort accepts host:port with a numeric port; port 0 (pick a free
// port) only where the address is one to bind.
func checkHostPort(s string, bind bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("want ip:port: %w", err)
	}
	if host == "" && !bind {
		return errors.New("want ip:port: host is empty")
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not a number in 0..65535", port)
	}
	if n == 0 && !bind {
		return errors.New("port 0 is only allowed for listen")
	}
	return nil
}
