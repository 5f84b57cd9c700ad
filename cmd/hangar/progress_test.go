package main

import (
	"bytes"
	"errors"
	"iter"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/hangarhq/hangar/api/pilotv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
)

// seqOf yields the snapshots, then err if it is not nil.
func seqOf(jobs []*pilotv1.Job, err error) iter.Seq2[*pilotv1.Job, error] {
	return func(yield func(*pilotv1.Job, error) bool) {
		for _, j := range jobs {
			if !yield(j, nil) {
				return
			}
		}
		if err != nil {
			yield(nil, err)
		}
	}
}

func TestRenderJobProgressText(t *testing.T) {
	tests := []struct {
		name      string
		snapshots []*pilotv1.Job
		want      string
		wantState pilotv1.JobState
	}{
		{
			name:      "job progressing with a retry",
			snapshots: progressingJob("j-1"),
			wantState: jSucceeded,
			want: `Job j-1 (create_cluster, cluster cl-new): 3 tasks
      ▸ create network ...
[1/3] ✓ create network  0.4s
      ▸ run instances ...
[2/3] ✓ run instances  3.2s
      ▸ start on role primary (order 1) ...
      ↻ start on role primary (order 1): attempt 1 failed: drone unreachable; retrying
      ▸ start on role primary (order 1) (attempt 2) ...
[3/3] ✓ start on role primary (order 1)  2.1s
Job j-1 succeeded after 6.3s: 3/3 tasks done.
`,
		},
		{
			name:      "failing job with node output",
			snapshots: failingJob("j-2"),
			wantState: jFailed,
			want: `Job j-2 (create_cluster, cluster cl-new): 3 tasks
      ▸ create network ...
[1/3] ✓ create network  1.0s
      ▸ start on role primary (order 1) ...
[2/3] ✗ start on role primary (order 1)  2.5s
        command failed on 1 of 2 nodes
Job j-2 failed after 3.5s: start on role primary (order 1): command failed on 1 of 2 nodes
1 of 3 tasks were skipped.

Failed: start on role primary (order 1)
  error: command failed on 1 of 2 nodes
  node cln-b (role primary, instance i-2): exit code 3
    | line 3
    | line 4
    | line 5
    | line 6
    | line 7
    | line 8
    | line 9
    | line 10
    | line 11
    | line 12
`,
		},
		{
			name: "attaching to a job half done shows the finished steps once",
			snapshots: func() []*pilotv1.Job {
				all := progressingJob("j-3")
				return []*pilotv1.Job{all[3], all[3], all[6]}
			}(),
			wantState: jSucceeded,
			want: `Job j-3 (create_cluster, cluster cl-new): 3 tasks
[1/3] ✓ create network  0.4s
[2/3] ✓ run instances  3.2s
      ▸ start on role primary (order 1) ...
[3/3] ✓ start on role primary (order 1)  2.1s
Job j-3 succeeded after 6.3s: 3/3 tasks done.
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			last, err := renderJobProgress(&buf, seqOf(tt.snapshots, nil), formatText)
			if err != nil {
				t.Fatal(err)
			}
			if last.GetState() != tt.wantState {
				t.Errorf("last state = %v, want %v", last.GetState(), tt.wantState)
			}
			if got := buf.String(); got != tt.want {
				t.Errorf("output:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestRenderJobProgressJSON(t *testing.T) {
	snaps := failingJob("j-4")
	var buf bytes.Buffer
	last, err := renderJobProgress(&buf, seqOf(snaps, nil), formatJSON)
	if err != nil {
		t.Fatal(err)
	}
	if last.GetState() != jFailed {
		t.Errorf("last state = %v", last.GetState())
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != len(snaps) {
		t.Fatalf("%d lines for %d snapshots:\n%s", len(lines), len(snaps), buf.String())
	}
	for i, l := range lines {
		var j pilotv1.Job
		if err := protojson.Unmarshal([]byte(l), &j); err != nil {
			t.Fatalf("line %d is not a Job: %v\n%s", i, err, l)
		}
		if j.GetId() != "j-4" || j.GetState() != snaps[i].GetState() || len(j.GetTasks()) != 3 {
			t.Errorf("line %d = %v", i, &j)
		}
	}
	if !strings.Contains(lines[2], `"exitCode":3`) || !strings.Contains(lines[2], "line 12") {
		t.Errorf("last line lacks the node result:\n%s", lines[2])
	}
	if strings.Contains(buf.String(), "✓") {
		t.Errorf("JSON mode printed text progress")
	}
}

func TestRenderJobProgressReturnsSequenceError(t *testing.T) {
	boom := errors.New("stream broken")
	snaps := progressingJob("j-5")[:2]
	var buf bytes.Buffer
	last, err := renderJobProgress(&buf, seqOf(snaps, boom), formatText)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want %v", err, boom)
	}
	if last != snaps[1] {
		t.Errorf("last = %v, want the last snapshot seen", last)
	}
	if strings.Contains(buf.String(), "succeeded after") || strings.Contains(buf.String(), "failed after") {
		t.Errorf("printed a final state for an unfinished job:\n%s", buf.String())
	}
	if _, err := renderJobProgress(&buf, seqOf(nil, nil), formatText); err == nil {
		t.Error("no snapshots: want an error")
	}
}

func TestRenderJobProgressRepeatedRetries(t *testing.T) {
	title := "wait for drones"
	withErr := func(state pilotv1.TaskState, attempts int32) *pilotv1.Task {
		t := tk("t1", title, state, attempts)
		t.Error = "drone not connected"
		return t
	}
	snaps := []*pilotv1.Job{
		snap("j-7", jRunning, tk("t1", title, tRunning, 1)),
		snap("j-7", jRunning, withErr(tPending, 1)),
		// Running again while still carrying the last error: no new retry.
		snap("j-7", jRunning, withErr(tRunning, 2)),
		// Failing again the same way is a second retry.
		snap("j-7", jRunning, withErr(tPending, 2)),
		snap("j-7", jRunning, withErr(tRunning, 3)),
		snap("j-7", jSucceeded, tk("t1", title, tSucceeded, 3)),
	}
	var buf bytes.Buffer
	if _, err := renderJobProgress(&buf, seqOf(snaps, nil), formatText); err != nil {
		t.Fatal(err)
	}
	want := `Job j-7 (create_cluster, cluster cl-new): 1 task
      ▸ wait for drones ...
      ↻ wait for drones: attempt 1 failed: drone not connected; retrying
      ▸ wait for drones (attempt 2) ...
      ↻ wait for drones: attempt 2 failed: drone not connected; retrying
      ▸ wait for drones (attempt 3) ...
[1/1] ✓ wait for drones
Job j-7 succeeded after 0.0s: 1/1 tasks done.
`
	if got := buf.String(); got != want {
		t.Errorf("output:\n%s\nwant:\n%s", got, want)
	}
}

func TestWriteFailuresNodeStates(t *testing.T) {
	job := snap("j-6", jFailed, func() *pilotv1.Task {
		t := tk("t1", "init on role db (order 0)", tFailed, 3)
		t.NodeResults = []*pilotv1.NodeResult{
			{NodeId: "cln-1", Role: "db", State: streamv1.CommandState_COMMAND_STATE_TIMED_OUT, ExitCode: -1},
			{NodeId: "cln-2", Role: "db", State: streamv1.CommandState_COMMAND_STATE_UNREACHABLE, Error: "drone did not answer"},
			{NodeId: "cln-3", Role: "db", State: streamv1.CommandState_COMMAND_STATE_EXITED},
		}
		return t
	}())
	var buf bytes.Buffer
	if err := writeFailures(&buf, job); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"node cln-1 (role db): exit code -1 (timed out)\n    (no output)",
		"node cln-2 (role db): unreachable\n    error: drone did not answer",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "cln-3") {
		t.Errorf("lists a node that succeeded:\n%s", out)
	}
}
