package api

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/pilot/jobs"
)

// A job's node results: in GetJob's view, and page by page, whole, from
// ListNodeResults.
func TestNodeResultsOfAJob(t *testing.T) {
	s, st := newServer(t)
	ctx := asMember()
	if _, err := s.PushApp(ctx, &pilotv1.PushAppRequest{Archive: copyPackage(t, nil)}); err != nil {
		t.Fatal(err)
	}
	r, err := s.CreateCluster(ctx, &pilotv1.CreateClusterRequest{App: "kv", Params: map[string]string{"cluster.replica.count": "2"}})
	if err != nil {
		t.Fatal(err)
	}
	var start *pilotv1.Task
	for _, tk := range r.Job.Tasks {
		if strings.HasPrefix(tk.Title, "start ") {
			start = tk
			break
		}
	}
	for _, nd := range r.Cluster.Nodes {
		res := &pilotv1.NodeResult{NodeId: nd.Id, Role: nd.Role, State: streamv1.CommandState_COMMAND_STATE_EXITED, Output: "started " + nd.Id}
		if err := jobs.NewTask(st, r.Job, start).Record(context.Background(), res); err != nil {
			t.Fatal(err)
		}
	}

	j, err := s.GetJob(ctx, &pilotv1.GetJobRequest{Id: r.Job.Id})
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range j.Tasks {
		if want := map[bool]int{true: 3, false: 0}[tk.Id == start.Id]; len(tk.NodeResults) != want {
			t.Errorf("GetJob: task %s shows %d results, want %d", tk.Id, len(tk.NodeResults), want)
		}
	}

	seen := map[string]bool{}
	token := ""
	for pages := 1; ; pages++ {
		resp, err := s.ListNodeResults(ctx, &pilotv1.ListNodeResultsRequest{JobId: r.Job.Id, PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, tr := range resp.Results {
			if tr.TaskId != start.Id || tr.Result.Output != "started "+tr.Result.NodeId || seen[tr.Result.NodeId] {
				t.Errorf("page %d: %v", pages, tr)
			}
			seen[tr.Result.NodeId] = true
		}
		if token = resp.NextPageToken; token == "" {
			if pages != 2 {
				t.Errorf("3 results in pages of 2 took %d pages", pages)
			}
			break
		}
	}
	if len(seen) != 3 {
		t.Fatalf("ListNodeResults gave %d nodes, want 3", len(seen))
	}
	if resp, err := s.ListNodeResults(ctx, &pilotv1.ListNodeResultsRequest{JobId: r.Job.Id, TaskId: "network"}); err != nil || len(resp.Results) != 0 {
		t.Errorf("results of a task that recorded none: %v, %v", resp, err)
	}
	if _, err := s.ListNodeResults(ctx, &pilotv1.ListNodeResultsRequest{JobId: r.Job.Id, TaskId: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("results of an unknown task: %v, want NotFound", err)
	}
}
