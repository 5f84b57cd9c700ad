package api

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/pilot/store"
)

func TestDeleteAppRefusesAVersionInUse(t *testing.T) {
	s, st := newServer(t)
	ctx := asMember()
	if _, err := s.PushApp(ctx, &pilotv1.PushAppRequest{Archive: copyPackage(t, nil)}); err != nil {
		t.Fatal(err)
	}
	r, err := s.CreateCluster(ctx, &pilotv1.CreateClusterRequest{App: "kv", AppVersion: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	// A cluster whose rollback would return to 1.0.0 uses it too.
	if err := st.Create(context.Background(), store.ClusterKey("cl-up"), &pilotv1.Cluster{Id: "cl-up", App: "kv", AppVersion: "2.0.0", PreviousAppVersion: "1.0.0", Tenant: testTenant}); err != nil {
		t.Fatal(err)
	}
	// Another tenant's cluster of its own kv does not.
	if err := st.Create(context.Background(), store.ClusterKey("cl-other"), &pilotv1.Cluster{Id: "cl-other", App: "kv", AppVersion: "1.0.0", Tenant: "other"}); err != nil {
		t.Fatal(err)
	}

	list, err := s.ListApps(ctx, &pilotv1.ListAppsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Users) != 1 || list.Users[0].Version != "1.0.0" || strings.Join(list.Users[0].ClusterIds, ",") != strings.Join(sortedIDs(r.Cluster.Id, "cl-up"), ",") {
		t.Fatalf("users of the versions: %v", list.Users)
	}

	_, err = s.DeleteApp(ctx, &pilotv1.DeleteAppRequest{Name: "kv", Version: "1.0.0"})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), r.Cluster.Id) || !strings.Contains(err.Error(), "cl-up") || strings.Contains(err.Error(), "cl-other") {
		t.Fatalf("delete of a version in use: %v", err)
	}
	if _, err := st.GetRaw(context.Background(), store.ArchiveKey(testTenant, "kv", "1.0.0")); err != nil {
		t.Fatalf("a refused delete removed the archive: %v", err)
	}

	for _, id := range []string{r.Cluster.Id, "cl-up"} {
		if err := st.Delete(context.Background(), store.ClusterKey(id)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.DeleteApp(ctx, &pilotv1.DeleteAppRequest{Name: "kv", Version: "1.0.0"}); err != nil {
		t.Fatalf("delete of an unused version: %v", err)
	}
	if _, err := s.GetApp(ctx, &pilotv1.GetAppRequest{Name: "kv", Version: "1.0.0"}); status.Code(err) != codes.NotFound {
		t.Fatalf("get of the deleted version: %v", err)
	}
	if _, err := s.CreateCluster(ctx, &pilotv1.CreateClusterRequest{App: "kv", AppVersion: "1.0.0"}); err == nil {
		t.Fatal("a cluster was created on the deleted version")
	}
	if n := countKeys(t, st, store.ArchivesPrefix); n != 0 {
		t.Fatalf("%d archives left", n)
	}

	// The version may be pushed again with other contents, and clusters
	// get the new package, not the parse of the deleted one.
	changed := copyPackage(t, func(d string) {
		replaceIn(t, filepath.Join(d, "config.json"), `"default": "hello from hangar"`, `"default": "hi"`)
	})
	if _, err := s.PushApp(ctx, &pilotv1.PushAppRequest{Archive: changed}); err != nil {
		t.Fatalf("push again of a deleted version: %v", err)
	}
	r, err = s.CreateCluster(ctx, &pilotv1.CreateClusterRequest{App: "kv", AppVersion: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Cluster.Params["env.motd"]; got != "hi" {
		t.Fatalf("a cluster of the version pushed again has motd %q, want the new default", got)
	}
}

func sortedIDs(ids ...string) []string {
	if ids[0] > ids[1] {
		ids[0], ids[1] = ids[1], ids[0]
	}
	return ids
}

func TestDeleteAppBadRequests(t *testing.T) {
	s, _ := newServer(t)
	for _, tc := range []struct {
		req  *pilotv1.DeleteAppRequest
		code codes.Code
		want string
	}{
		{&pilotv1.DeleteAppRequest{Name: "kv"}, codes.InvalidArgument, "version: required"},
		{&pilotv1.DeleteAppRequest{Name: "kv", Version: "9.9.9"}, codes.NotFound, "app kv version 9.9.9: not found"},
		{&pilotv1.DeleteAppRequest{Name: "Bad Name", Version: "1"}, codes.InvalidArgument, "names are lowercase"},
	} {
		_, err := s.DeleteApp(asMember(), tc.req)
		if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("delete %v: %v, want %v %q", tc.req, err, tc.code, tc.want)
		}
	}
}

// TestDeleteAppRacingCreates: creates and a delete of the same version at
// once never leave a cluster on a deleted version.
func TestDeleteAppRacingCreates(t *testing.T) {
	for round := range 20 {
		s, st := newServer(t)
		ctx := asMember()
		if _, err := s.PushApp(ctx, &pilotv1.PushAppRequest{Archive: copyPackage(t, nil)}); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var deleteErr error
		for i := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if i == 2 {
					_, deleteErr = s.DeleteApp(ctx, &pilotv1.DeleteAppRequest{Name: "kv", Version: "1.0.0"})
					return
				}
				_, _ = s.CreateCluster(ctx, &pilotv1.CreateClusterRequest{App: "kv", AppVersion: "1.0.0"})
			}()
		}
		wg.Wait()
		clusters := countKeys(t, st, store.ClustersPrefix)
		archives := countKeys(t, st, store.ArchivesPrefix)
		if clusters > 0 && archives == 0 {
			t.Fatalf("round %d: %d clusters on a deleted version (delete: %v)", round, clusters, deleteErr)
		}
		if deleteErr == nil && archives != 0 {
			t.Fatalf("round %d: the delete succeeded and the archive is still there", round)
		}
	}
}
