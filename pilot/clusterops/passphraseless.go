package clusterops

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/internal/secretbox"
	"github.com/hangarhq/hangar/pilot/store"
)

// passphraseless (docs/appcenter-format.md §1.3): the nodes of such a
// role reach one another over SSH without a password. Pilot makes one key
// pair per cluster and role, the first time the cluster's metadata or
// config is delivered, and keeps it sealed in its store. The public key is
// every node's /host/pub_key (and the role's hosts' under /hosts); each
// node of the role gets, with its confd files, three more resources
// (conf.d/hangar-ssh-*.toml) that write /root/.ssh/id_rsa (0600),
// id_rsa.pub and authorized_keys (the role's public key), under the
// instance's root where it has one. The private key goes to the drone in
// the signed configuration, over its mutually authenticated stream, and is
// never in the metadata.

// sshKeyBits is the size of the RSA keys made for ssh-rsa.
const sshKeyBits = 3072

// sshKey is a role's key pair: the private key in PEM, the public one in
// authorized_keys form.
type sshKey struct{ private, public string }

// roleSSHKey returns the key pair of role in cluster c, making it the first
// time. Two tasks racing make one pair: the store's create decides.
func (o *Ops) roleSSHKey(ctx context.Context, c *pilotv1.Cluster, role string) (sshKey, error) {
	key := store.SSHKeyKey(c.Id, role)
	ad := key // a sealed key opens only under its own store key
	read := func() (sshKey, error) {
		raw, err := o.cfg.Store.GetRaw(ctx, key)
		if err != nil {
			return sshKey{}, err
		}
		priv := string(raw)
		if secretbox.IsSealed(priv) {
			if priv, err = o.cfg.Packages.Box.Open(priv, ad); err != nil {
				return sshKey{}, fmt.Errorf("ssh key of role %s: %w", role, err)
			}
		}
		return parseSSHKey(priv)
	}
	k, err := read()
	if !errors.Is(err, store.ErrNotFound) {
		return k, err
	}
	rk, err := rsa.GenerateKey(rand.Reader, sshKeyBits)
	if err != nil {
		return sshKey{}, fmt.Errorf("make the ssh key of role %s: %w", role, err)
	}
	priv := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}))
	stored := priv
	if box := o.cfg.Packages.Box; box != nil {
		stored = box.Seal(priv, ad)
	}
	if err := o.cfg.Store.CreateAll(ctx, nil, map[string][]byte{key: []byte(stored)}); err != nil && !errors.Is(err, store.ErrExists) {
		return sshKey{}, err
	}
	return read()
}

func parseSSHKey(priv string) (sshKey, error) {
	signer, err := ssh.ParsePrivateKey([]byte(priv))
	if err != nil {
		return sshKey{}, fmt.Errorf("ssh key: %w", err)
	}
	return sshKey{private: priv, public: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))}, nil
}

// sshPublicKeys are the public keys of c's passphraseless roles, by role.
func (o *Ops) sshPublicKeys(ctx context.Context, c *pilotv1.Cluster, spec *apppkg.ClusterSpec) (map[string]string, error) {
	out := map[string]string{}
	for _, n := range spec.Nodes {
		if n.Passphraseless == "" {
			continue
		}
		k, err := o.roleSSHKey(ctx, c, n.Role)
		if err != nil {
			return nil, err
		}
		out[n.Role] = k.public
	}
	return out, nil
}

// sshFiles are the confd files a node of role gets besides the package's:
// none unless the role is passphraseless.
func (o *Ops) sshFiles(ctx context.Context, c *pilotv1.Cluster, spec *apppkg.ClusterSpec, role string, files map[string][]byte) (map[string][]byte, error) {
	rs := roleSpec(spec, role)
	if rs == nil || rs.Passphraseless == "" {
		return files, nil
	}
	k, err := o.roleSSHKey(ctx, c, role)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(files)+6)
	for name, b := range files {
		out[name] = b
	}
	// One key pair per role: its public key is the one key the role's
	// nodes accept.
	for name, body := range map[string]string{
		"id_rsa":          k.private,
		"id_rsa.pub":      k.public + "\n",
		"authorized_keys": k.public + "\n",
	} {
		mode := "0600"
		if name == "id_rsa.pub" {
			mode = "0644"
		}
		res := "hangar-ssh-" + strings.ReplaceAll(name, ".", "_")
		out["conf.d/"+res+".toml"] = fmt.Appendf(nil, "[template]\nsrc = %q\ndest = %q\nmode = %q\nkeys = [\"/host\"]\n", "hangar-ssh/"+name, "/root/.ssh/"+name, mode)
		out["templates/hangar-ssh/"+name] = []byte(body)
	}
	return out, nil
}
