//go:build unix

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hangarhq/hangar/internal/loadgen"
)

// TestMain lets the test binary be the server start and restart run
// (they run their own executable with serve).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestRestartRefusesNothing: start, two restarts and a stop under a
// load; while the server runs no request fails, each restart leaves a new
// process, and stop leaves none.
func TestRestartRefusesNothing(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skipf("no loopback: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	conf := filepath.Join(dir, "web.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("# test\nlisten = %s\nname = n1\n", addr)), 0o644); err != nil {
		t.Fatal(err)
	}
	o := ControlOptions{ConfigFile: conf, PIDFile: filepath.Join(dir, "run", "web.pid"), LogFile: filepath.Join(dir, "web.log"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx := context.Background()
	pid := func() string { b, _ := os.ReadFile(o.PIDFile); return strings.TrimSpace(string(b)) }
	t.Cleanup(func() { _ = Stop(ctx, o.PIDFile, 5*time.Second, o.Logger) })

	if err := Start(ctx, o); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Check(ctx, conf, &out); err != nil || !strings.Contains(out.String(), pid()) {
		t.Fatalf("check: %v %q (pid %s)", err, out.String(), pid())
	}
	load := loadgen.Start(loadgen.Config{URL: "http://" + addr + "/", Clients: 4})
	seen := map[string]bool{pid(): true}
	for range 2 {
		if err := Restart(ctx, o); err != nil {
			load.Stop()
			t.Fatal(err)
		}
		if seen[pid()] {
			t.Errorf("restart left pid %s, which ran before", pid())
		}
		seen[pid()] = true
	}
	s := load.Stop()
	t.Log(s)
	if s.Failures > 0 || s.ByBackend["n1"] == 0 {
		t.Errorf("load across two restarts: %s", s)
	}
	if err := Stop(ctx, o.PIDFile, 0, o.Logger); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("still listening after stop")
	}
}
