package jobs

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/pilot/store"
)

// Node results live under keys of their own
// (store.NodeResultKey(job, task, node)), not in the job record: a job over
// a thousand nodes with 64 KiB of output each would otherwise be a 64 MiB
// record rewritten at every task update. The job record keeps what grows
// with the plan (tasks), and a result is written once per change of its
// own.

// resultsPageSize bounds the results one read holds: 64 of at most about
// 64 KiB of output each.
const resultsPageSize = 64

// ViewOutputBudget is about how much command output one job view (GetJob,
// WatchJob) carries in all. Each node result keeps the last
// max(ViewOutputBudget/n, MinOutputShare) bytes of its output, n being the
// job's results: up to 64 results (64 KiB each, the drone's own bound)
// nothing is trimmed, and a thousand-node job stays a few MiB per
// snapshot instead of tens.
const ViewOutputBudget = 4 << 20

// MinOutputShare is the least output a result keeps in a job view: more
// than the lines `hangar job show` prints of a failure.
const MinOutputShare = 2 << 10

// NodeResult is one node's result in one task.
type NodeResult struct {
	TaskID string
	Result *pilotv1.NodeResult
}

// ForEachResult calls fn with each of a job's node results (in task id,
// then node id order), reading them a page at a time as of revision rev
// (0: now); after is the key to start after ("": the first).
func ForEachResult(ctx context.Context, s *store.Store, jobID string, rev int64, fn func(NodeResult) error) error {
	prefix := store.JobNodeResultsPrefix(jobID)
	after := ""
	for {
		page, err := s.ListPage(ctx, prefix, after, resultsPageSize, rev)
		if err != nil {
			return err
		}
		for i, k := range page.Keys {
			nr, err := decodeResult(prefix, k, page.Values[i])
			if err != nil {
				return err
			}
			if err := fn(nr); err != nil {
				return err
			}
			after = k
		}
		if !page.More || len(page.Keys) == 0 {
			return nil
		}
	}
}

// ResultsPage reads at most limit of a job's node results whose keys sort
// after the key named by token (an opaque page token: ""), optionally only
// those of one task. It returns the token of the next page, "" when none
// is left.
func ResultsPage(ctx context.Context, s *store.Store, jobID, taskID, token string, limit int) ([]NodeResult, string, error) {
	prefix := store.JobNodeResultsPrefix(jobID)
	if taskID != "" {
		prefix += taskID + "/"
	}
	after := ""
	if token != "" {
		after = prefix + token
	}
	page, err := s.ListPage(ctx, prefix, after, limit, 0)
	if err != nil {
		return nil, "", err
	}
	out := make([]NodeResult, 0, len(page.Keys))
	for i, k := range page.Keys {
		nr, err := decodeResult(store.JobNodeResultsPrefix(jobID), k, page.Values[i])
		if err != nil {
			return nil, "", err
		}
		out = append(out, nr)
	}
	next := ""
	if page.More && len(page.Keys) > 0 {
		next = strings.TrimPrefix(page.Keys[len(page.Keys)-1], prefix)
	}
	return out, next, nil
}

// decodeResult decodes the result stored at key (under a job's prefix).
func decodeResult(jobPrefix, key string, b []byte) (NodeResult, error) {
	taskID, _, ok := strings.Cut(strings.TrimPrefix(key, jobPrefix), "/")
	if !ok {
		return NodeResult{}, fmt.Errorf("node result key %s: want <job>/<task>/<node>", key)
	}
	r := &pilotv1.NodeResult{}
	if err := store.Decode(key, b, r); err != nil {
		return NodeResult{}, err
	}
	return NodeResult{TaskID: taskID, Result: r}, nil
}

// View returns the job with its node results attached, their outputs
// trimmed to the view's budget (ViewOutputBudget): what GetJob answers.
func View(ctx context.Context, s *store.Store, job *pilotv1.Job) (*pilotv1.Job, error) {
	v := newView(job)
	if err := v.load(ctx, s, 0); err != nil {
		return nil, err
	}
	return v.snapshot(), nil
}

// view assembles job views from a job record and its node results, keeping
// only what a view shows of each output.
type view struct {
	job     *pilotv1.Job
	results map[string]map[string]*pilotv1.NodeResult // task → node → result
	n       int
}

func newView(job *pilotv1.Job) *view {
	return &view{job: job, results: map[string]map[string]*pilotv1.NodeResult{}}
}

// load replaces the view's results with those stored as of rev (0: now).
func (v *view) load(ctx context.Context, s *store.Store, rev int64) error {
	v.results, v.n = map[string]map[string]*pilotv1.NodeResult{}, 0
	return ForEachResult(ctx, s, v.job.Id, rev, func(nr NodeResult) error {
		v.put(nr.TaskID, nr.Result)
		return nil
	})
}

// put adds or replaces a result. A view's results only ever grow in
// number, so each output's share only shrinks: trimming the kept copy to
// today's share loses nothing a later snapshot shows.
func (v *view) put(taskID string, r *pilotv1.NodeResult) {
	byNode := v.results[taskID]
	if byNode == nil {
		byNode = map[string]*pilotv1.NodeResult{}
		v.results[taskID] = byNode
	}
	if _, ok := byNode[r.NodeId]; !ok {
		v.n++
	}
	byNode[r.NodeId] = r
	trimOutput(r, v.share())
}

func (v *view) share() int {
	return max(ViewOutputBudget/max(v.n, 1), MinOutputShare)
}

// trimOutput keeps the last share bytes of r's output (at a UTF-8
// boundary, so the message stays valid).
func trimOutput(r *pilotv1.NodeResult, share int) {
	if len(r.Output) <= share {
		return
	}
	out := r.Output[len(r.Output)-share:]
	for len(out) > 0 && !utf8.RuneStart(out[0]) {
		out = out[1:]
	}
	r.Output, r.OutputTrimmed = out, true
}

// snapshot is the job with its results, each task's in node id order.
func (v *view) snapshot() *pilotv1.Job {
	j := proto.Clone(v.job).(*pilotv1.Job)
	share := v.share()
	for _, t := range j.Tasks {
		byNode := v.results[t.Id]
		ids := make([]string, 0, len(byNode))
		for id := range byNode {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		t.NodeResults = make([]*pilotv1.NodeResult, 0, len(ids))
		for _, id := range ids {
			r := proto.Clone(byNode[id]).(*pilotv1.NodeResult)
			trimOutput(r, share)
			t.NodeResults = append(t.NodeResults, r)
		}
	}
	return j
}
