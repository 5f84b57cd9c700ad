package jobs

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/types/known/timestamppb"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/pilot/store"
)

// TestPrune: per cluster the newest MaxPerCluster jobs stay; older ended
// ones go with their node results and specs; a running job, a pinned one
// and one changed since it was read stay; MaxAge deletes what ended long
// ago.
func TestPrune(t *testing.T) {
	ctx := context.Background()
	st := newStore(t)
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	put := func(id, cluster string, state pilotv1.JobState, age time.Duration) {
		t.Helper()
		at := timestamppb.New(now.Add(-age))
		if err := st.Put(ctx, store.JobKey(id), &pilotv1.Job{Id: id, ClusterId: cluster, State: state, CreatedAt: at, UpdatedAt: at}); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{store.NodeResultKey(id, "t", "n1"), store.NodeResultKey(id, "t", "n2"), store.JobSpecKey(id)} {
			if _, err := st.Client().Put(ctx, k, "x"); err != nil {
				t.Fatal(err)
			}
		}
	}
	done, running := pilotv1.JobState_JOB_STATE_SUCCEEDED, pilotv1.JobState_JOB_STATE_RUNNING
	// Cluster a: j-a1 oldest .. j-a6 newest; j-a2 still running, j-a1
	// pinned (the cluster's last job, say).
	for i := 1; i <= 6; i++ {
		state := done
		if i == 2 {
			state = running
		}
		put(fmt.Sprintf("j-a%d", i), "a", state, time.Duration(10-i)*time.Hour)
	}
	put("j-b1", "b", pilotv1.JobState_JOB_STATE_FAILED, 2*time.Hour)
	put("j-b2", "b", pilotv1.JobState_JOB_STATE_CANCELLED, time.Hour)
	put("j-c1", "c", done, 40*24*time.Hour)

	p, err := NewPruner(st, Retention{MaxAge: 30 * 24 * time.Hour, MaxPerCluster: 2,
		Pinned: func(context.Context) (map[string]bool, error) { return map[string]bool{"j-a1": true}, nil }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := p.Prune(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"j-a1", "j-a2", "j-a5", "j-a6", "j-b1", "j-b2"}
	if got := storedJobs(t, st); fmt.Sprint(got) != fmt.Sprint(want) || n != 3 || p.Pruned() != 3 {
		t.Fatalf("after pruning: %v (%d deleted, counter %d); want %v (3 deleted)", got, n, p.Pruned(), want)
	}
	for _, id := range []string{"j-a3", "j-a4", "j-c1"} {
		resp, err := st.Client().Get(ctx, "/hangar/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range resp.Kvs {
			if k := string(kv.Key); k == store.JobSpecKey(id) || k == store.NodeResultKey(id, "t", "n1") {
				t.Errorf("job %s was pruned but %s is left", id, k)
			}
		}
	}
	if r, _ := st.Client().Get(ctx, store.NodeResultKey("j-a5", "t", "n1")); len(r.Kvs) != 1 {
		t.Error("a kept job lost its node results")
	}

	// A job changed since it was read (a retry) is not deleted.
	j := &pilotv1.Job{}
	rev, err := st.Get(ctx, store.JobKey("j-b1"), j)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, store.JobKey("j-b1"), j); err != nil {
		t.Fatal(err)
	}
	if ok, err := p.delete(ctx, storedJob{id: "j-b1", rev: rev}); err != nil || ok {
		t.Errorf("delete of a job changed since it was read: %v, %v; want it left", ok, err)
	}

	if _, err := NewPruner(st, Retention{MaxPerCluster: -1}, nil); err == nil {
		t.Error("a negative MaxPerCluster was accepted")
	}
}

func storedJobs(t *testing.T, st *store.Store) []string {
	t.Helper()
	js, err := store.List(context.Background(), st, store.JobsPrefix, func() *pilotv1.Job { return &pilotv1.Job{} })
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, j := range js {
		ids = append(ids, j.Id)
	}
	sort.Strings(ids)
	return ids
}
