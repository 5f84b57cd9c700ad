package kv

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// runServer serves the config in a new file until the test ends.
func runServer(t *testing.T, config string) (*Server, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kv.conf")
	writeFile(t, path, config)
	srv, err := Open(Options{ConfigFile: path, PullInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ctx); err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return srv, path
}

func getKey(c *http.Client, addr, key string) (string, error) {
	resp, err := c.Get("http://" + addr + "/kv/" + key)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", key, resp.Status)
	}
	return string(b), nil
}

func TestReplicaMirrorsPrimary(t *testing.T) {
	c := testClient(t)
	primary, _ := runServer(t, "role = primary\nlisten = 127.0.0.1:0\nmotd = p\n")
	replica, _ := runServer(t, fmt.Sprintf("role = replica\nlisten = 127.0.0.1:0\nprimary = %s\nmotd = r\n", primary.Addr()))

	if code, body := do(t, c, http.MethodPut, "http://"+primary.Addr()+"/kv/greeting", "hello"); code != http.StatusOK {
		t.Fatalf("PUT on primary: %d %s", code, body)
	}
	eventually(t, 5*time.Second, func() error {
		v, err := getKey(c, replica.Addr(), "greeting")
		if err != nil {
			return err
		}
		if v != "hello" {
			return fmt.Errorf("replica has %q", v)
		}
		return nil
	})

	// Later writes arrive incrementally and overwrite.
	do(t, c, http.MethodPut, "http://"+primary.Addr()+"/kv/greeting", "bonjour")
	do(t, c, http.MethodPost, "http://"+primary.Addr()+"/kv/other", "x") // POST writes like PUT
	eventually(t, 5*time.Second, func() error {
		st, err := getStatus(c, replica.Addr())
		if err != nil {
			return err
		}
		if st.Keys != 2 || st.Version != 3 {
			return fmt.Errorf("replica status %+v, want 2 keys at version 3", st)
		}
		v, err := getKey(c, replica.Addr(), "greeting")
		if err != nil || v != "bonjour" {
			return fmt.Errorf("greeting = %q, %v", v, err)
		}
		return nil
	})

	st, err := getStatus(c, replica.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if st.Role != RoleReplica || st.Primary != primary.Addr() || st.MOTD != "r" || st.Listen != replica.Addr() {
		t.Fatalf("replica status = %+v", st)
	}
	if code, _ := do(t, c, http.MethodGet, "http://"+primary.Addr()+"/kv/missing", ""); code != http.StatusNotFound {
		t.Fatalf("GET missing key: %d, want 404", code)
	}
}

func TestReplicaRefusesWrites(t *testing.T) {
	c := testClient(t)
	replica, _ := runServer(t, "role = replica\nlisten = 127.0.0.1:0\nprimary = 127.0.0.1:9\n")
	code, body := do(t, c, http.MethodPut, "http://"+replica.Addr()+"/kv/k", "v")
	if code != http.StatusForbidden {
		t.Fatalf("PUT on replica: %d, want 403", code)
	}
	if !strings.Contains(body, "127.0.0.1:9") {
		t.Fatalf("403 body %q does not name the primary", body)
	}
	if code, _ := do(t, c, http.MethodGet, "http://"+replica.Addr()+"/kv/k", ""); code != http.StatusNotFound {
		t.Fatalf("refused write was stored: GET answered %d", code)
	}
}

func TestDumpSince(t *testing.T) {
	c := testClient(t)
	primary, _ := runServer(t, "role = primary\nlisten = 127.0.0.1:0\n")
	for _, k := range []string{"a", "b", "c"} {
		do(t, c, http.MethodPut, "http://"+primary.Addr()+"/kv/"+k, k)
	}
	code, body := do(t, c, http.MethodGet, "http://"+primary.Addr()+"/dump?since=1", "")
	if code != http.StatusOK || strings.Contains(body, `"key":"a"`) || !strings.Contains(body, `"key":"b"`) || !strings.Contains(body, `"key":"c"`) {
		t.Fatalf("dump since=1: %d %s", code, body)
	}
	if code, body := do(t, c, http.MethodGet, "http://"+primary.Addr()+"/dump?since=-1", ""); code != http.StatusBadRequest || !strings.Contains(body, "since") {
		t.Fatalf("dump since=-1: %d %s, want 400 naming since", code, body)
	}
}

func TestReload(t *testing.T) {
	c := testClient(t)
	srv, path := runServer(t, "role = primary\nlisten = 127.0.0.1:0\nmotd = before\n")

	writeFile(t, path, "role = primary\nlisten = 127.0.0.1:1\nmotd = after\n")
	if err := srv.Reload(); err != nil {
		t.Fatal(err)
	}
	st, err := getStatus(c, srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if st.MOTD != "after" {
		t.Fatalf("motd after reload = %q, want after", st.MOTD)
	}
	if got := srv.Config().Listen; got != "127.0.0.1:0" {
		t.Fatalf("listen after reload = %q: a new listen address needs a restart", got)
	}

	writeFile(t, path, "role = primary\nlisten = nonsense\nmotd = broken\n")
	if err := srv.Reload(); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("reload of a bad config: err = %v, want one naming listen", err)
	}
	if got := srv.Config().MOTD; got != "after" {
		t.Fatalf("bad reload changed motd to %q", got)
	}
}

// A replica whose primary changes (the primary was replaced) drops what it
// mirrored and follows the new one.
func TestReplicaFollowsNewPrimary(t *testing.T) {
	c := testClient(t)
	oldP, _ := runServer(t, "role = primary\nlisten = 127.0.0.1:0\n")
	newP, _ := runServer(t, "role = primary\nlisten = 127.0.0.1:0\n")
	do(t, c, http.MethodPut, "http://"+oldP.Addr()+"/kv/old", "1")
	do(t, c, http.MethodPut, "http://"+newP.Addr()+"/kv/new", "2")

	replica, path := runServer(t, fmt.Sprintf("role = replica\nlisten = 127.0.0.1:0\nprimary = %s\n", oldP.Addr()))
	eventually(t, 5*time.Second, func() error {
		_, err := getKey(c, replica.Addr(), "old")
		return err
	})

	writeFile(t, path, fmt.Sprintf("role = replica\nlisten = 127.0.0.1:0\nprimary = %s\n", newP.Addr()))
	if err := replica.Reload(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() error {
		if _, err := getKey(c, replica.Addr(), "new"); err != nil {
			return err
		}
		if _, err := getKey(c, replica.Addr(), "old"); err == nil {
			return fmt.Errorf("key of the old primary still served")
		}
		return nil
	})
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.conf")
	if _, err := Open(Options{ConfigFile: missing}); err == nil || !strings.Contains(err.Error(), "missing.conf") {
		t.Fatalf("open of a missing file: %v", err)
	}
	srv, _ := runServer(t, "role = primary\nlisten = 127.0.0.1:0\n")
	taken := filepath.Join(dir, "taken.conf")
	if err := os.WriteFile(taken, []byte("role = primary\nlisten = "+srv.Addr()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{ConfigFile: taken}); err == nil || !strings.Contains(err.Error(), srv.Addr()) {
		t.Fatalf("open on a taken port: %v", err)
	}
}
