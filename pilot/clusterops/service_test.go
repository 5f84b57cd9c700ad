package clusterops

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/internal/cmdsign"
	"github.com/hangarhq/hangar/pilot/jobs"
)

func TestCommandRequestIsSigned(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	req, err := commandRequest(priv, "cln-1", "job.task.cln-1", "echo hi", 120, now)
	if err != nil {
		t.Fatal(err)
	}
	rc := req.GetRunCommand()
	if rc.GetNodeId() != "cln-1" || rc.GetCommandId() != "job.task.cln-1" || rc.GetCmd() != "echo hi" || rc.GetTimeoutSeconds() != 120 {
		t.Fatalf("request carries %v", rc)
	}
	if err := cmdsign.Verify(pub, rc, "cln-1", now); err != nil {
		t.Fatalf("the drone would refuse pilot's command: %v", err)
	}
	// Valid for the whole time pilot may ask for its result, and not longer.
	if got, want := rc.GetExpiresAt().AsTime(), now.Add(120*time.Second+cmdsign.ExpiryMargin); !got.Equal(want) {
		t.Fatalf("expires_at %v, want %v", got, want)
	}
	if err := cmdsign.Verify(pub, rc, "cln-1", now.Add(120*time.Second+30*time.Second)); err != nil {
		t.Fatalf("refused while pilot still waits for the result: %v", err)
	}
	if err := cmdsign.Verify(pub, rc, "cln-1", now.Add(120*time.Second+cmdsign.ExpiryMargin)); !errors.Is(err, cmdsign.ErrExpired) {
		t.Fatalf("after expiry: %v, want ErrExpired", err)
	}
	if err := cmdsign.Verify(pub, rc, "cln-2", now); !errors.Is(err, cmdsign.ErrWrongTarget) {
		t.Fatalf("on another node: %v, want ErrWrongTarget", err)
	}

	// A retry (say after a pilot restart) signs afresh and is valid too.
	later := now.Add(time.Hour)
	again, err := commandRequest(priv, "cln-1", "job.task.cln-1", "echo hi", 120, later)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmdsign.Verify(pub, again.GetRunCommand(), "cln-1", later); err != nil {
		t.Fatalf("retry: %v", err)
	}
}

func TestCommandRequestWithoutKey(t *testing.T) {
	_, err := commandRequest(nil, "cln-1", "c1", "echo hi", 60, time.Now())
	if err == nil || !strings.Contains(err.Error(), "CommandKey") {
		t.Fatalf("commandRequest without key: %v, want an error naming CommandKey", err)
	}
}

// Without a command key runOnNode fails before it records anything or
// calls the frontgate (both nil here: touching them would panic), and the
// failure is final rather than retried.
func TestRunOnNodeRefusesWithoutKey(t *testing.T) {
	o := New(Config{})
	task := &jobs.Task{Job: &pilotv1.Job{Id: "j1"}, Task: &pilotv1.Task{Id: "t1", Title: "start"}}
	err := o.runOnNode(context.Background(), task, &pilotv1.Network{FrontgateId: "fg-1"}, &pilotv1.Node{Id: "cln-1", Role: "db"}, "echo hi", 60)
	if err == nil || !strings.Contains(err.Error(), "never sends unsigned commands") {
		t.Fatalf("runOnNode without key: %v", err)
	}
	if jobs.IsRetryable(err) {
		t.Fatalf("runOnNode without key: %v is retryable; a retry cannot find a key", err)
	}
}

// A role's serial, max_in_flight and canary shape how its nodes run a
// service: at most that many at once, the canaries first, and nothing more
// after a failure.
func TestRollout(t *testing.T) {
	nodes := func(n int) []*pilotv1.Node {
		var out []*pilotv1.Node
		for i := range n {
			out = append(out, &pilotv1.Node{Id: fmt.Sprintf("n%d", i), Role: "r", Sid: int32(i + 1)})
		}
		return out
	}
	spec := func(serial bool, maxInFlight, canary int) *apppkg.ClusterSpec {
		return &apppkg.ClusterSpec{Nodes: []apppkg.NodeSpec{{Role: "r", Serial: serial, MaxInFlight: maxInFlight, Canary: canary}}}
	}
	for _, tc := range []struct {
		name         string
		spec         *apppkg.ClusterSpec
		nodes        int
		fail         string // node whose call fails
		wantPeak     int
		wantRan      int
		wantErrMatch string
	}{
		{"parallel", spec(false, 0, 0), 5, "", 5, 5, ""},
		{"serial", spec(true, 0, 0), 4, "", 1, 4, ""},
		{"serial stops at a failure", spec(true, 0, 0), 4, "n1", 1, 2, "2 more nodes were not started"},
		{"max_in_flight", spec(false, 2, 0), 5, "", 2, 5, ""},
		{"canary fails", spec(false, 0, 1), 4, "n0", 1, 1, "canary failed; the role's other 3 nodes were left untouched"},
		{"canary passes", spec(false, 0, 2), 5, "", 3, 5, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			inFlight, peak, ran := 0, 0, 0
			err := rollout(context.Background(), tc.spec, nodes(tc.nodes), func(_ context.Context, nd *pilotv1.Node) error {
				mu.Lock()
				inFlight++
				ran++
				peak = max(peak, inFlight)
				mu.Unlock()
				// Long enough for parallel calls to overlap.
				time.Sleep(20 * time.Millisecond)
				mu.Lock()
				inFlight--
				mu.Unlock()
				if nd.Id == tc.fail {
					return errors.New("failed")
				}
				return nil
			})
			if peak != tc.wantPeak || ran != tc.wantRan {
				t.Errorf("peak %d in flight, %d ran; want %d and %d", peak, ran, tc.wantPeak, tc.wantRan)
			}
			if (tc.wantErrMatch == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.wantErrMatch)) {
				t.Errorf("err = %v, want one saying %q", err, tc.wantErrMatch)
			}
		})
	}
}
