//go:build unix

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Config is what a node's server needs: where it listens and its name.
type Config struct {
	Listen string
	Name   string
}

// LoadConfig reads `key = value` lines (listen, name); # starts a comment.
func LoadConfig(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	var c Config
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return Config{}, fmt.Errorf("config %s:%d: want key = value", path, n)
		}
		switch k, v = strings.TrimSpace(k), strings.TrimSpace(v); k {
		case "listen":
			c.Listen = v
		case "name":
			c.Name = v
		default:
			return Config{}, fmt.Errorf("config %s:%d: unknown key %q", path, n, k)
		}
	}
	if err := sc.Err(); err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return c, c.check()
}

func (c Config) check() error {
	if c.Listen == "" || c.Name == "" {
		return fmt.Errorf("%w: a listen address and a name are required", errUsage)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen %q: %w", c.Listen, err)
	}
	return nil
}

// handler answers GET / with the node's name (and an X-Hangar-Node
// header), and /healthz with "ok <pid>": restart tells the new process
// from the old one by it.
func handler(name string) http.Handler {
	mux := http.NewServeMux()
	pid := os.Getpid()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "ok %d\n", pid)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Hangar-Node", name)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "%s\n", name)
	})
	return mux
}

// listen binds addr with SO_REUSEPORT, so a restarting node's new server
// binds while the old one still serves: the port never refuses.
func listen(addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	return lc.Listen(context.Background(), "tcp", addr)
}

// Serve runs the server until SIGTERM or SIGINT, then stops taking
// connections and lets the requests in flight finish, for at most drain.
func Serve(cfg Config, drain time.Duration, log *slog.Logger) error {
	if err := cfg.check(); err != nil {
		return err
	}
	ln, err := listen(cfg.Listen)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	srv := &http.Server{Handler: handler(cfg.Name), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("hangar-web serving", "listen", cfg.Listen, "name", cfg.Name, "pid", os.Getpid())
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case s := <-sig:
		log.Info("hangar-web draining", "signal", s.String(), "drain", drain)
	}
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("serve: drain: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("hangar-web stopped")
	return nil
}
