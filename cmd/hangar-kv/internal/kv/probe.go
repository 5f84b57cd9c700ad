package kv

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Check reports whether the server configured in configFile answers
// /healthz within timeout.
func Check(ctx context.Context, configFile string, timeout time.Duration) error {
	cfg, err := LoadConfig(configFile)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	probe, err := probeAddr(cfg.Listen)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := healthz(ctx, probe); err != nil {
		return fmt.Errorf("check: %w", err)
	}
	return nil
}

// probeAddr is where to reach a server bound to listen.
func probeAddr(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("listen %q: %w", listen, err)
	}
	if port == "0" {
		return "", fmt.Errorf("listen %q: port 0 picks a random port, which start and check cannot probe; configure a port", listen)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// healthz asks addr for /healthz and returns the pid that answered.
func healthz(ctx context.Context, addr string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/healthz", nil)
	if err != nil {
		return 0, err
	}
	c, done := oneShotClient()
	defer done()
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET http://%s/healthz: %s", addr, resp.Status)
	}
	pid, _ := strconv.Atoi(resp.Header.Get(PIDHeader))
	return pid, nil
}

// Monitor returns the server's monitor items, in the shape the app
// package's monitor cmd prints: {"keys": N, "version": N, "requests": N}
// (requests: the /kv/ requests served since the server started).
func Monitor(ctx context.Context, configFile string, timeout time.Duration) (map[string]int64, error) {
	cfg, err := LoadConfig(configFile)
	if err != nil {
		return nil, fmt.Errorf("monitor: %w", err)
	}
	probe, err := probeAddr(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("monitor: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var st Status
	if err := getJSON(ctx, "http://"+probe+"/status", &st); err != nil {
		return nil, fmt.Errorf("monitor: %w", err)
	}
	return map[string]int64{"keys": int64(st.Keys), "version": int64(st.Version), "requests": int64(st.Requests)}, nil
}

// oneShotClient makes a client whose connections close with each call, so
// no keep-alive goroutine outlives it.
func oneShotClient() (*http.Client, func()) {
	tr := &http.Transport{DisableKeepAlives: true}
	return &http.Client{Transport: tr}, tr.CloseIdleConnections
}

func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	c, done := oneShotClient()
	defer done()
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("GET %s: decode: %w", url, err)
	}
	return nil
}
