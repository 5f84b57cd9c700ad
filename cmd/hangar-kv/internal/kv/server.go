package kv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Options.
const (
	DefaultPullInterval = 500 * time.Millisecond
	maxValueBytes       = 1 << 20
	shutdownGrace       = 5 * time.Second
)

// PIDHeader is set on every /healthz answer so that `start` can tell its own
// child from another process that already holds the port.
const PIDHeader = "Hangar-Kv-Pid"

// Options configure a Server.
type Options struct {
	// ConfigFile is read at Open and again on every Reload.
	ConfigFile string
	Logger     *slog.Logger
	// PullInterval is how often a replica pulls from its primary.
	PullInterval time.Duration
	// Client is used by a replica to reach its primary.
	Client *http.Client
}

// Server is one hangar-kv process: a primary that takes writes, or a
// replica that mirrors its primary and serves reads.
type Server struct {
	opts  Options
	log   *slog.Logger
	ln    net.Listener
	addr  string
	role  string // fixed at Open; changing it needs a restart
	epoch string
	store *store
	// requests counts the /kv/ requests served (the monitor's
	// "requests"; status and health probes are not counted).
	requests atomic.Uint64

	mu  sync.Mutex
	cfg Config
}

// Status is the JSON answer of GET /status.
type Status struct {
	Role       string `json:"role"`
	Listen     string `json:"listen"`
	Primary    string `json:"primary"`
	MOTD       string `json:"motd"`
	Keys       int    `json:"keys"`
	Version    uint64 `json:"version"`
	Requests   uint64 `json:"requests"`
	ConfigFile string `json:"config_file"`
}

// Open reads the config file and binds the listen address, so that a bad
// config or a taken port fails before anything is served.
func Open(opts Options) (*Server, error) {
	if opts.ConfigFile == "" {
		return nil, errors.New("open server: config file is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.PullInterval <= 0 {
		opts.PullInterval = DefaultPullInterval
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 5 * time.Second}
	}
	if abs, err := filepath.Abs(opts.ConfigFile); err == nil {
		opts.ConfigFile = abs
	}
	cfg, err := LoadConfig(opts.ConfigFile)
	if err != nil {
		return nil, fmt.Errorf("open server: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("open server: listen on %s: %w", cfg.Listen, err)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &Server{
		opts:  opts,
		log:   opts.Logger,
		ln:    ln,
		addr:  ln.Addr().String(),
		role:  cfg.Role,
		epoch: hex.EncodeToString(b[:]),
		store: newStore(),
		cfg:   cfg,
	}, nil
}

// Addr is the bound listen address (the real port when the config asked
// for port 0).
func (s *Server) Addr() string { return s.addr }

// Config returns the config in effect.
func (s *Server) Config() Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// Reload re-reads the config file. motd and primary take effect at once;
// a changed role or listen address is logged and kept for the next start,
// since neither can change under a running server. An invalid file leaves
// the running config untouched.
func (s *Server) Reload() error {
	cfg, err := LoadConfig(s.opts.ConfigFile)
	if err != nil {
		s.log.Error("reload failed, keeping the running config", "err", err)
		return fmt.Errorf("reload: %w", err)
	}
	s.mu.Lock()
	old := s.cfg
	if cfg.Listen != old.Listen {
		s.log.Warn("listen changed; restart hangar-kv to apply it", "running", old.Listen, "configured", cfg.Listen)
		cfg.Listen = old.Listen
	}
	if cfg.Role != s.role {
		s.log.Warn("role changed; restart hangar-kv to apply it", "running", s.role, "configured", cfg.Role)
		cfg.Role = s.role
	}
	s.cfg = cfg
	s.mu.Unlock()
	s.log.Info("config reloaded", "motd", cfg.MOTD, "primary", cfg.Primary,
		"motd_changed", cfg.MOTD != old.MOTD, "primary_changed", cfg.Primary != old.Primary)
	return nil
}

// Serve answers HTTP requests (and, on a replica, pulls from the primary)
// until ctx is done, then shuts down gracefully. It closes the listener in
// every case.
func (s *Server) Serve(ctx context.Context) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var wg sync.WaitGroup
	serveErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		serveErr <- srv.Serve(s.ln)
	}()
	if s.role == RoleReplica {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.pullLoop(ctx)
		}()
	}
	s.log.Info("serving", "role", s.role, "listen", s.addr, "config", s.opts.ConfigFile)

	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
		err = fmt.Errorf("serve %s: %w", s.addr, err)
	}
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer scancel()
	if serr := srv.Shutdown(sctx); serr != nil && err == nil {
		err = fmt.Errorf("shut down %s: %w", s.addr, serr)
	}
	wg.Wait()
	s.log.Info("stopped", "listen", s.addr)
	return err
}

// Handler returns the HTTP API of the server.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /kv/{key}", s.handleGet)
	mux.HandleFunc("PUT /kv/{key}", s.handlePut)
	// POST writes too: clients such as busybox's wget (all a minimal
	// container has) and HTML forms cannot PUT.
	mux.HandleFunc("POST /kv/{key}", s.handlePut)
	mux.HandleFunc("GET /dump", s.handleDump)
	mux.HandleFunc("GET /status", s.handleStatus)
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/kv/") {
			s.requests.Add(1)
		}
		mux.ServeHTTP(w, r)
	})
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	v, ok := s.store.get(r.PathValue("key"))
	if !ok {
		http.Error(w, "key not found", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = io.WriteString(w, v)
}

func (s *Server) handlePut(w http.ResponseWriter, r *http.Request) {
	if s.role != RolePrimary {
		primary := s.Config().Primary
		w.Header().Set("Location", "http://"+primary+"/kv/"+url.PathEscape(r.PathValue("key")))
		http.Error(w, fmt.Sprintf("this is a read-only replica; write to the primary at %s", primary), http.StatusForbidden)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxValueBytes+1))
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(body) > maxValueBytes {
		http.Error(w, fmt.Sprintf("value is larger than %d bytes", maxValueBytes), http.StatusRequestEntityTooLarge)
		return
	}
	key := r.PathValue("key")
	version := s.store.put(key, string(body))
	writeJSON(w, map[string]any{"key": key, "version": version})
}

func (s *Server) handleDump(w http.ResponseWriter, r *http.Request) {
	var since uint64
	if q := r.URL.Query().Get("since"); q != "" {
		n, err := strconv.ParseUint(q, 10, 64)
		if err != nil {
			http.Error(w, fmt.Sprintf("since %q: want a non-negative integer", q), http.StatusBadRequest)
			return
		}
		since = n
	}
	version, entries := s.store.since(since)
	writeJSON(w, Dump{Epoch: s.epoch, Version: version, Entries: entries})
}

func (s *Server) handleStatus(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, s.status())
}

func (s *Server) status() Status {
	cfg := s.Config()
	keys, version := s.store.stats()
	return Status{
		Role:       s.role,
		Listen:     s.addr,
		Primary:    cfg.Primary,
		MOTD:       cfg.MOTD,
		Keys:       keys,
		Version:    version,
		Requests:   s.requests.Load(),
		ConfigFile: s.opts.ConfigFile,
	}
}

func (s *Server) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set(PIDHeader, strconv.Itoa(os.Getpid()))
	_, _ = io.WriteString(w, "ok\n")
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// pullLoop mirrors the primary into the local store until ctx is done.
func (s *Server) pullLoop(ctx context.Context) {
	t := time.NewTicker(s.opts.PullInterval)
	defer t.Stop()
	// Keep-alive connections own goroutines; none may outlive Serve.
	defer s.opts.Client.CloseIdleConnections()
	var (
		from    string // primary the local store mirrors
		epoch   string // that primary's epoch
		since   uint64
		lastErr string // logged once per distinct failure, not every tick
	)
	for {
		primary := s.Config().Primary
		if primary != from {
			from, epoch, since = primary, "", 0
		}
		d, err := s.fetchDump(ctx, primary, since)
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			if msg := err.Error(); msg != lastErr {
				s.log.Warn("pull from primary failed", "primary", primary, "err", err)
				lastErr = msg
			}
		case epoch != "" && d.Epoch != epoch:
			// The primary restarted: its versions start over, so the next
			// pull fetches everything.
			s.log.Info("primary restarted, resyncing", "primary", primary)
			epoch, since = "", 0
		default:
			if lastErr != "" {
				s.log.Info("pull from primary recovered", "primary", primary)
				lastErr = ""
			}
			s.store.apply(d.Version, d.Entries, epoch == "")
			epoch, since = d.Epoch, d.Version
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Server) fetchDump(ctx context.Context, primary string, since uint64) (Dump, error) {
	u := "http://" + primary + "/dump?since=" + strconv.FormatUint(since, 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Dump{}, fmt.Errorf("pull %s: %w", u, err)
	}
	resp, err := s.opts.Client.Do(req)
	if err != nil {
		return Dump{}, fmt.Errorf("pull %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return Dump{}, fmt.Errorf("pull %s: %s: %s", u, resp.Status, b)
	}
	var d Dump
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		return Dump{}, fmt.Errorf("pull %s: decode: %w", u, err)
	}
	return d, nil
}
