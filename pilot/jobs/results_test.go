package jobs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/pilot/store"
)

// maxRecordBytes is what a job record (and so each of its tasks) must stay
// under whatever the cluster's size.
const maxRecordBytes = 64 << 10

// outputOf is a node's command output: 64 KiB (the drone's bound), its
// own throughout, so a result read back under another node's key shows.
func outputOf(nodeID string) string {
	line := "output of " + nodeID + "\n"
	return strings.Repeat(line, (64<<10)/len(line)+1)[:64<<10]
}

// A job over 1,000 nodes, each reporting 64 KiB of output, in a task that
// then fails naming every node: the job record stays under 64 KiB, every
// result reads back whole, and a job view stays a few MiB.
func TestThousandNodeJobStaysSmall(t *testing.T) {
	const nodes = 1000
	s := newStore(t)
	ctx := context.Background()
	handler := func(ctx context.Context, task *Task) error {
		if task.Task.Id != "start" {
			return nil
		}
		ids := make(chan string)
		var wg sync.WaitGroup
		errs := make(chan error, nodes)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for id := range ids {
					r := &pilotv1.NodeResult{NodeId: id, Role: "replica", CommandId: "j." + id, Cmd: "start",
						State: streamv1.CommandState_COMMAND_STATE_EXITED, ExitCode: 1, Output: outputOf(id)}
					if err := task.Record(ctx, r); err != nil {
						errs <- err
					}
				}
			}()
		}
		for i := range nodes {
			ids <- fmt.Sprintf("cln-%04d", i)
		}
		close(ids)
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return err
		}
		// As a service step fails: naming each node, with its output.
		var all []error
		for i := range nodes {
			all = append(all, fmt.Errorf("node cln-%04d (role replica): command \"start\" exited with code 1; output: %s", i, outputOf("x")[:2048]))
		}
		return errors.Join(all...)
	}
	startEngine(t, Config{Store: s, Handlers: map[string]Handler{"step": handler}})
	tasks := []*pilotv1.Task{task("network"), task("frontgate", "network")}
	for i := range 8 {
		tasks = append(tasks, task(fmt.Sprintf("instances-role%d", i), "frontgate"))
	}
	tasks = append(tasks, task("start", "instances-role0"))
	submit(t, s, NewJob("j-big", "k", "c1", tasks))
	final := waitJob(t, s, "j-big", 3*time.Minute)
	if final.State != pilotv1.JobState_JOB_STATE_FAILED {
		t.Fatalf("job %v, want FAILED by the start step", final.State)
	}

	raw, err := s.GetRaw(ctx, store.JobKey("j-big"))
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) >= maxRecordBytes {
		t.Errorf("the job record is %d bytes, want under %d", len(raw), maxRecordBytes)
	}
	rec := &pilotv1.Job{}
	if err := store.Decode("job", raw, rec); err != nil {
		t.Fatal(err)
	}
	for _, tk := range rec.Tasks {
		if n := proto.Size(tk); n >= maxRecordBytes || len(tk.NodeResults) > 0 {
			t.Errorf("task %s: %d bytes with %d node results in the job record", tk.Id, n, len(tk.NodeResults))
		}
	}

	// Every result reads back whole, under its node.
	got := 0
	if err := ForEachResult(ctx, s, "j-big", 0, func(nr NodeResult) error {
		got++
		if nr.TaskID != "start" || nr.Result.Output != outputOf(nr.Result.NodeId) || nr.Result.OutputTrimmed {
			t.Errorf("result of %s in task %s: %d bytes of output (trimmed %v), not the node's own", nr.Result.NodeId, nr.TaskID, len(nr.Result.Output), nr.Result.OutputTrimmed)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got != nodes {
		t.Fatalf("read back %d results, want %d", got, nodes)
	}
	// And page by page, as ListNodeResults serves them.
	paged, token := 0, ""
	for {
		page, next, err := ResultsPage(ctx, s, "j-big", "start", token, 100)
		if err != nil {
			t.Fatal(err)
		}
		paged += len(page)
		if next == "" {
			break
		}
		token = next
	}
	if paged != nodes {
		t.Fatalf("paged through %d results, want %d", paged, nodes)
	}

	// The job view has every node, each output's tail.
	share := ViewOutputBudget / nodes
	for _, tk := range final.Tasks {
		if tk.Id != "start" {
			continue
		}
		if len(tk.NodeResults) != nodes {
			t.Fatalf("the view shows %d results of the start step, want %d", len(tk.NodeResults), nodes)
		}
		for _, r := range tk.NodeResults {
			if full := outputOf(r.NodeId); !r.OutputTrimmed || len(r.Output) > share || !strings.HasSuffix(full, r.Output) {
				t.Fatalf("view of %s: %d bytes (trimmed %v), want the last %d of its output", r.NodeId, len(r.Output), r.OutputTrimmed, share)
			}
		}
	}
	if n := proto.Size(final); n > ViewOutputBudget+nodes*512 {
		t.Errorf("the job view is %d bytes", n)
	}
}

// A small job's view carries each output whole.
func TestViewKeepsSmallOutputsWhole(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	j := NewJob("j1", "k", "c1", []*pilotv1.Task{task("a")})
	submit(t, s, j)
	tk := NewTask(s, j, j.Tasks[0])
	for _, id := range []string{"cln-1", "cln-2"} {
		if err := tk.Record(ctx, &pilotv1.NodeResult{NodeId: id, Output: outputOf(id), State: streamv1.CommandState_COMMAND_STATE_RUNNING}); err != nil {
			t.Fatal(err)
		}
	}
	// A later record of a node replaces its earlier one.
	if err := tk.Record(ctx, &pilotv1.NodeResult{NodeId: "cln-2", Output: outputOf("cln-2"), State: streamv1.CommandState_COMMAND_STATE_EXITED}); err != nil {
		t.Fatal(err)
	}
	v, err := View(ctx, s, j)
	if err != nil {
		t.Fatal(err)
	}
	rs := v.Tasks[0].NodeResults
	if len(rs) != 2 || rs[0].NodeId != "cln-1" || rs[1].State != streamv1.CommandState_COMMAND_STATE_EXITED {
		t.Fatalf("view results %v", rs)
	}
	for _, r := range rs {
		if r.OutputTrimmed || r.Output != outputOf(r.NodeId) {
			t.Errorf("%s: %d bytes, trimmed %v; want its whole output", r.NodeId, len(r.Output), r.OutputTrimmed)
		}
	}
}
