package clusterops

import (
	"context"
	"errors"
	"strings"
	"testing"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/secretbox"
	"github.com/hangarhq/hangar/pilot/store"
)

// A passphraseless role's nodes share one key pair: its public key is
// each node's pub_key in the metadata, and each node of the role (only)
// gets the files that write it to /root/.ssh; pilot keeps the private key
// sealed, and drops it with the cluster.
func TestPassphraseless(t *testing.T) {
	dir := copyDir(t, "../../tests/e2e/testdata/opsapp", "", func(s string) string {
		old := `"role": "member",`
		if !strings.Contains(s, old) {
			t.Fatalf("opsapp's member changed: %q not found", old)
		}
		return strings.Replace(s, old, old+` "passphraseless": "ssh-rsa",`, 1)
	})
	h := newOpsHarnessWith(t, dir)
	r := h.create(t, nil)
	h.runJob(t, r.Job)
	ctx := context.Background()
	c, rev := h.cluster(t, r.Cluster.Id)

	raw, err := h.st.GetRaw(ctx, store.SSHKeyKey(c.Id, "member"))
	if err != nil || !secretbox.IsSealed(string(raw)) {
		t.Fatalf("stored key: sealed %v, %v", secretbox.IsSealed(string(raw)), err)
	}
	h.fg.mu.Lock()
	tree := h.fg.metadata[c.Id]
	renderers := h.fg.renderers
	h.fg.mu.Unlock()
	var pub string
	for _, n := range c.Nodes {
		key := tree["hosts/"+n.Role+"/"+n.InstanceId+"/pub_key"]
		files := renderers[n.Id].GetFiles()
		if n.Role == "lead" {
			if key != "" || len(files["templates/hangar-ssh/id_rsa"]) > 0 {
				t.Fatalf("lead %s got a key: pub_key %q, %d bytes of private key", n.Id, key, len(files["templates/hangar-ssh/id_rsa"]))
			}
			continue
		}
		if !strings.HasPrefix(key, "ssh-rsa ") || (pub != "" && key != pub) {
			t.Fatalf("member %s pub_key %q (others %q)", n.Id, key, pub)
		}
		pub = key
		if !strings.Contains(string(files["templates/hangar-ssh/id_rsa"]), "BEGIN RSA PRIVATE KEY") ||
			strings.TrimSpace(string(files["templates/hangar-ssh/authorized_keys"])) != key ||
			!strings.Contains(string(files["conf.d/hangar-ssh-id_rsa.toml"]), `dest = "/root/.ssh/id_rsa"`) ||
			!strings.Contains(string(files["conf.d/hangar-ssh-id_rsa.toml"]), `mode = "0600"`) {
			t.Fatalf("member %s files: %q", n.Id, files["conf.d/hangar-ssh-id_rsa.toml"])
		}
	}
	if pub == "" {
		t.Fatal("no member has a pub_key")
	}
	for k, v := range tree {
		if strings.Contains(v, "PRIVATE KEY") {
			t.Fatalf("the metadata holds a private key at %s", k)
		}
	}

	del, err := h.life.Delete(ctx, OpRequest{C: c, Rev: rev}, false, false)
	if err != nil {
		t.Fatal(err)
	}
	h.runJob(t, del.Job)
	if _, err := h.st.GetRaw(ctx, store.SSHKeyKey(c.Id, "member")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the key outlived its cluster: %v", err)
	}
	if _, err := h.st.Get(ctx, store.ClusterKey(c.Id), &pilotv1.Cluster{}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("cluster record: %v", err)
	}
}
