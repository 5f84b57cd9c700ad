package agent

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/cmdsign"
	"github.com/hangarhq/hangar/internal/streamrpc"
	"github.com/hangarhq/hangar/internal/testca"
)

func newCommandKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signWith signs rc as pilot does, giving it pilot's expiry unless it has
// one, and returns the request carrying it.
func signWith(t *testing.T, key ed25519.PrivateKey, rc *streamv1.RunCommand) *streamv1.Request {
	t.Helper()
	if rc.ExpiresAt == nil {
		rc.ExpiresAt = timestamppb.New(cmdsign.ExpiresAt(time.Now(), rc.TimeoutSeconds))
	}
	if err := cmdsign.Sign(key, rc); err != nil {
		t.Fatal(err)
	}
	return runCommand(rc)
}

// signed signs rc with the command key the drone trusts.
func (d *drone) signed(t *testing.T, rc *streamv1.RunCommand) *streamv1.Request {
	t.Helper()
	return signWith(t, d.cmdKey, rc)
}

// logBuffer collects an agent's log lines; handlers write from the agent's
// goroutines while the test reads.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestRunsOnlyCommandsPilotSigned(t *testing.T) {
	ca := testca.New(t)
	fg := startFrontgate(t, ca, ca)
	logs := &logBuffer{}
	d := startDrone(t, ca, fg.addr, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	c := fg.next(t)

	markerOf := func(id string) string { return filepath.Join(d.dir, "marker-"+id) }
	cmdOf := func(id string) *streamv1.RunCommand {
		return &streamv1.RunCommand{NodeId: "cln-1", CommandId: id, Cmd: fmt.Sprintf("echo ran >> %s", markerOf(id)), TimeoutSeconds: 30}
	}
	for _, tc := range []struct {
		name   string
		req    func(t *testing.T) *streamv1.Request
		reason string
	}{
		{"unsigned", func(t *testing.T) *streamv1.Request {
			rc := cmdOf("unsigned")
			rc.ExpiresAt = timestamppb.New(time.Now().Add(time.Hour))
			return runCommand(rc)
		}, "not signed"},
		{"bad signature", func(t *testing.T) *streamv1.Request {
			req := d.signed(t, cmdOf("tampered"))
			// The frontgate swaps the command after pilot signed it.
			req.GetRunCommand().Cmd += "; echo evil"
			return req
		}, "signature is not valid"},
		{"signed by another key", func(t *testing.T) *streamv1.Request {
			return signWith(t, newCommandKey(t), cmdOf("impostor"))
		}, "signature is not valid"},
		{"signed for another node", func(t *testing.T) *streamv1.Request {
			rc := cmdOf("elsewhere")
			rc.NodeId = "cln-2"
			return d.signed(t, rc)
		}, `node_id "cln-2"`},
		{"expired", func(t *testing.T) *streamv1.Request {
			rc := cmdOf("stale")
			rc.ExpiresAt = timestamppb.New(time.Now().Add(-time.Second))
			return d.signed(t, rc)
		}, "expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.req(t)
			id := req.GetRunCommand().GetCommandId()
			_, err := call(t, c.peer, req)
			if !streamrpc.IsCode(err, streamrpc.CodeUnauthenticated) || !strings.Contains(err.Error(), "command "+id+" rejected") || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("got %v, want an %s error rejecting %s for %q", err, streamrpc.CodeUnauthenticated, id, tc.reason)
			}
			if _, err := os.Stat(markerOf(id)); !os.IsNotExist(err) {
				t.Fatalf("the rejected command ran (marker: %v)", err)
			}
			// Not even recorded: the executor never saw it.
			if _, err := os.Stat(filepath.Join(d.dir, "commands", id+".json")); !os.IsNotExist(err) {
				t.Fatalf("the rejected command was recorded (%v)", err)
			}
			if l := logs.String(); !strings.Contains(l, `level=ERROR msg="command rejected"`) || !strings.Contains(l, "command_id="+id) || !strings.Contains(l, "node_id=cln-1") {
				t.Fatalf("no ERROR log rejecting %s in:\n%s", id, l)
			}
		})
	}

	// A valid command runs; the same request replayed is answered from the
	// record without running again.
	req := d.signed(t, cmdOf("valid"))
	replay := proto.Clone(req).(*streamv1.Request)
	resp, err := call(t, c.peer, req)
	if err != nil {
		t.Fatal(err)
	}
	first := resp.GetCommandResult()
	if first.GetState() != streamv1.CommandState_COMMAND_STATE_EXITED || first.GetExitCode() != 0 {
		t.Fatalf("valid command: %v", first)
	}
	resp, err = call(t, c.peer, replay)
	if err != nil {
		t.Fatal(err)
	}
	if again := resp.GetCommandResult(); again.GetState() != first.GetState() || !again.GetFinishedAt().AsTime().Equal(first.GetFinishedAt().AsTime()) {
		t.Fatalf("replay answered %v, want the recorded %v", again, first)
	}
	// A replay of the executed id is verified before its record is used:
	// re-aimed at another node or past its expiry it is refused.
	other := cmdOf("valid")
	other.NodeId = "cln-2"
	expired := cmdOf("valid")
	expired.ExpiresAt = timestamppb.New(time.Now().Add(-time.Minute))
	for _, rq := range []*streamv1.Request{d.signed(t, other), d.signed(t, expired)} {
		if _, err := call(t, c.peer, rq); !streamrpc.IsCode(err, streamrpc.CodeUnauthenticated) {
			t.Fatalf("replay of an executed id, %v: got %v, want %s", rq.GetRunCommand(), err, streamrpc.CodeUnauthenticated)
		}
	}
	b, err := os.ReadFile(markerOf("valid"))
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "ran\n" {
		t.Fatalf("marker %q: the command must have run exactly once", b)
	}
}

// A drone without pilot's public key fails closed.
func TestRefusesEveryCommandWithoutAKey(t *testing.T) {
	ca := testca.New(t)
	fg := startFrontgate(t, ca, ca)
	d := startDrone(t, ca, fg.addr, func(c *Config) { c.CommandPublicKey = nil })
	c := fg.next(t)
	marker := filepath.Join(d.dir, "marker")
	_, err := call(t, c.peer, d.signed(t, &streamv1.RunCommand{NodeId: "cln-1", CommandId: "c1", Cmd: "touch " + marker}))
	if !streamrpc.IsCode(err, streamrpc.CodeUnauthenticated) || !strings.Contains(err.Error(), "no valid command public key") {
		t.Fatalf("got %v, want %s naming the missing key", err, streamrpc.CodeUnauthenticated)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatalf("the command ran (marker: %v)", err)
	}
}
