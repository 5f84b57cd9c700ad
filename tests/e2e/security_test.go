package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/jointoken"
	"github.com/hangarhq/hangar/internal/pki"
	"github.com/hangarhq/hangar/internal/streamrpc"
	"github.com/hangarhq/hangar/internal/tlsutil"
	"github.com/hangarhq/hangar/internal/userdata"
)

// instanceOf returns the instance dir of a node.
func (p *pilot) instanceDir(id string) string {
	return filepath.Join(p.runtimeRoot(), "instances", id)
}

// frontgateInstance finds the frontgate's instance dir and user data.
func frontgateInstance(t *testing.T, p *pilot) (string, userdata.Frontgate) {
	t.Helper()
	for _, d := range instanceDirs(t, p) {
		fg, err := userdata.ReadFrontgate(filepath.Join(p.instanceDir(d), "userdata.json"))
		if err == nil {
			return d, fg
		}
	}
	t.Fatal("no frontgate instance")
	return "", userdata.Frontgate{}
}

func newCSR(t *testing.T) []byte {
	t.Helper()
	key, _ := pki.NewKey()
	csr, err := pki.NewCSR(key)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// TestSecurityBoundaries runs a real cluster and then tries, from outside
// and from inside, what a compromised or hostile party would.
func TestSecurityBoundaries(t *testing.T) {
	p := startPilot(t)
	createLocalRuntime(t, p)
	p.mustHangar("app", "push", "examples/kv")
	a, job := createCluster(t, p, "kv", map[string]string{"cluster.replica.count": "1"})
	mustSucceed(t, job)
	b, job := createCluster(t, p, "kv", map[string]string{"cluster.replica.count": "0"})
	mustSucceed(t, job)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	_, fgUD := frontgateInstance(t, p)
	droneA := a.Nodes[0]
	droneUD, err := userdata.ReadDrone(filepath.Join(p.instanceDir(droneA.InstanceId), "userdata.json"))
	if err != nil {
		t.Fatal(err)
	}
	fgHost, _, _ := net.SplitHostPort(droneUD.FrontgateAddress)

	t.Run("the API refuses calls without a token", func(t *testing.T) {
		cfg, _ := tlsutil.AnonymousClientConfig(p.caPEM(), "127.0.0.1", pki.Identity{})
		conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, err = pilotv1.NewClusterServiceClient(conn).ListClusters(ctx, &pilotv1.ListClustersRequest{})
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("ListClusters without a token: %v, want Unauthenticated", err)
		}
	})

	t.Run("used join tokens are refused", func(t *testing.T) {
		cfg, _ := tlsutil.AnonymousClientConfig(p.caPEM(), "127.0.0.1", pki.Identity{})
		conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, err = pilotv1.NewEnrollmentServiceClient(conn).Join(ctx, joinRequest(t, fgUD.JoinToken, newCSR(t)))
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "already used") {
			t.Fatalf("re-using the frontgate's token at pilot: %v", err)
		}
		// The drone's token, through the frontgate.
		fcfg, _ := tlsutil.AnonymousClientConfig(p.caPEM(), fgHost, pki.Identity{})
		fconn, err := grpc.NewClient(droneUD.FrontgateAddress, grpc.WithTransportCredentials(credentials.NewTLS(fcfg)))
		if err != nil {
			t.Fatal(err)
		}
		defer fconn.Close()
		_, err = streamv1.NewDroneLinkClient(fconn).Join(ctx, joinRequest(t, droneUD.JoinToken, newCSR(t)))
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("re-using a drone's token at the frontgate: %v, want PermissionDenied", err)
		}
	})

	t.Run("no certificate, no stream", func(t *testing.T) {
		// To pilot's frontgate link, and to the frontgate's drone link.
		for _, tc := range []struct{ name, addr, host string }{
			{"pilot", p.addr, "127.0.0.1"},
			{"frontgate", droneUD.FrontgateAddress, fgHost},
		} {
			cfg, _ := tlsutil.AnonymousClientConfig(p.caPEM(), tc.host, pki.Identity{})
			conn, err := grpc.NewClient(tc.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
			if err != nil {
				t.Fatal(err)
			}
			sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
			var serr error
			if tc.name == "pilot" {
				st, err := streamv1.NewFrontgateLinkClient(conn).Connect(sctx)
				if serr = err; err == nil {
					_ = streamrpc.SendHello(st, &streamv1.Hello{Component: "frontgate", Id: fgUD.FrontgateID})
					_, serr = st.Recv()
				}
			} else {
				st, err := streamv1.NewDroneLinkClient(conn).Connect(sctx)
				if serr = err; err == nil {
					_ = streamrpc.SendHello(st, &streamv1.Hello{Component: "drone", Id: droneA.Id, ClusterId: a.Id})
					_, serr = st.Recv()
				}
			}
			scancel()
			conn.Close()
			if c := status.Code(serr); c != codes.Unauthenticated && c != codes.PermissionDenied {
				t.Errorf("%s: stream without a certificate: %v, want it refused", tc.name, serr)
			}
		}
		// A certificate from another CA does not even complete TLS.
		other, _ := pki.LoadOrCreateCA(t.TempDir())
		key, _ := pki.NewKey()
		certPEM, _, _ := other.Issue(key.Public(), pki.Identity{Kind: pki.KindDrone, ID: droneA.Id, Cluster: a.Id}, nil, nil, time.Hour)
		keyPEM, _ := pki.EncodeKey(key)
		forged, _ := tlsutil.Save(t.TempDir(), keyPEM, certPEM, other.CertPEM())
		cfg := forged.ClientConfig(fgHost, pki.Identity{})
		cfg.RootCAs = p.ca().Pool() // trust the real frontgate, present the forged cert
		conn, err := grpc.NewClient(droneUD.FrontgateAddress, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		st, err := streamv1.NewDroneLinkClient(conn).Connect(ctx)
		if err == nil {
			_ = streamrpc.SendHello(st, &streamv1.Hello{Component: "drone", Id: droneA.Id, ClusterId: a.Id})
			_, err = st.Recv()
		}
		if err == nil {
			t.Fatal("a drone certificate from another CA was accepted")
		}
	})

	t.Run("a drone reads only its own cluster and writes nothing", func(t *testing.T) {
		// The real drone's own credentials, from its instance.
		creds, err := tlsutil.Load(filepath.Join(p.instanceDir(droneA.InstanceId), "data", "tls"))
		if err != nil {
			t.Fatal(err)
		}
		c, err := clientv3.New(clientv3.Config{Endpoints: droneUD.EtcdEndpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop(), TLS: creds.ClientConfig(fgHost, pki.Identity{})})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		own, err := c.Get(ctx, "/clusters/"+a.Id+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil || own.Count == 0 {
			t.Fatalf("drone of %s reading its own metadata: %v (%v)", a.Id, err, own)
		}
		for _, tc := range []struct {
			what string
			op   func() error
		}{
			{"read cluster B", func() error {
				_, err := c.Get(ctx, "/clusters/"+b.Id+"/", clientv3.WithPrefix())
				return err
			}},
			{"read everything", func() error { _, err := c.Get(ctx, "/", clientv3.WithPrefix()); return err }},
			{"write its own cluster", func() error { _, err := c.Put(ctx, "/clusters/"+a.Id+"/env/port", "1"); return err }},
			{"delete cluster B", func() error {
				_, err := c.Delete(ctx, "/clusters/"+b.Id+"/", clientv3.WithPrefix())
				return err
			}},
		} {
			if err := tc.op(); err == nil || !strings.Contains(err.Error(), "permission denied") {
				t.Errorf("drone of %s could %s: %v", a.Id, tc.what, err)
			}
		}
	})
}

// TestSecretsNeverInClear creates a cluster with a password parameter on a
// runtime that needs a credential, then looks for both values everywhere
// they must not be: every log line, every API response, every etcd value.
func TestSecretsNeverInClear(t *testing.T) {
	const password = "pw-Zq8vX2mLr7"
	const accessKey = "ak-Hw3nP9tYc4"
	p := startPilot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sum := sha256.Sum256([]byte(accessKey))
	rt, err := p.runtimes.CreateRuntime(ctx, &pilotv1.CreateRuntimeRequest{Id: "local", Provider: "local", Zone: "local",
		Config:      map[string]string{"access_key_sha256": hex.EncodeToString(sum[:])},
		Credentials: map[string]string{"access_key": accessKey}})
	if err != nil {
		t.Fatal(err)
	}
	p.mustHangar("app", "push", "tests/e2e/testdata/testapp")
	r, err := p.clusters.CreateCluster(ctx, &pilotv1.CreateClusterRequest{App: "testapp", Runtime: "local",
		Params: map[string]string{"env.exit_code": "0", "env.secret": password}})
	if err != nil {
		t.Fatal(err)
	}
	job := p.waitJob(ctx, r.Job.Id)
	mustSucceed(t, job)
	c := p.cluster(r.Cluster.Id)

	// The app itself gets the password: the drone decrypted it.
	rendered, err := os.ReadFile(filepath.Join(p.instanceRoot(c.Nodes[0].InstanceId), "etc", "testapp", "secret.conf"))
	if err != nil || !strings.Contains(string(rendered), password) {
		t.Fatalf("the app's config does not hold the password (%v): %q", err, rendered)
	}

	check := func(where, text string) {
		t.Helper()
		for _, secret := range []string{password, accessKey} {
			if strings.Contains(text, secret) {
				t.Errorf("%s contains a secret in clear", where)
			}
		}
	}
	// API responses.
	list, _ := p.clusters.ListClusters(ctx, &pilotv1.ListClustersRequest{})
	rts, _ := p.runtimes.ListRuntimes(ctx, &pilotv1.ListRuntimesRequest{})
	jobs, _ := p.jobs.ListJobs(ctx, &pilotv1.ListJobsRequest{})
	for name, msg := range map[string]string{
		"CreateCluster": protojson.Format(r), "GetCluster": protojson.Format(c), "ListClusters": protojson.Format(list),
		"CreateRuntime": protojson.Format(rt), "ListRuntimes": protojson.Format(rts), "ListJobs": protojson.Format(jobs),
	} {
		check("API response "+name, msg)
	}
	if c.Params["env.secret"] != "******" {
		t.Errorf("GetCluster shows env.secret as %q, want ******", c.Params["env.secret"])
	}
	if len(rt.CredentialKeys) != 1 || rt.CredentialKeys[0] != "access_key" {
		t.Errorf("runtime credential keys %v, want [access_key]", rt.CredentialKeys)
	}
	show, _ := p.hangar("cluster", "show", c.Id, "-o", "json")
	check("hangar cluster show", show)
	rest, _ := p.restGet("/v1/clusters/" + c.Id)
	check("REST GET cluster", rest)

	// Every etcd value: pilot's (found in its log) and the frontgate's.
	pilotEtcd := etcdURLFromLog(t, p)
	fgID := frontgateID(t, p)
	ud, _ := userdata.ReadDrone(filepath.Join(p.instanceDir(c.Nodes[0].InstanceId), "userdata.json"))
	for name, ec := range map[string]*clientv3.Client{
		"pilot etcd":     etcdClient(t, p, pilotEtcd, pki.Identity{Kind: pki.KindPilot, ID: "pilot"}),
		"frontgate etcd": etcdClient(t, p, ud.EtcdEndpoints[0], pki.Identity{Kind: pki.KindFrontgate, ID: fgID}),
	} {
		resp, err := ec.Get(ctx, "", clientv3.WithFromKey())
		ec.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(resp.Kvs) == 0 {
			t.Fatalf("%s: read no keys", name)
		}
		for _, kv := range resp.Kvs {
			check(fmt.Sprintf("%s value %s", name, kv.Key), string(kv.Value))
		}
	}

	// Every log line: pilot's, the plugin's (in pilot's), every agent's.
	p.mustHangar("cluster", "delete", c.Id, "--wait")
	logs := []string{p.logPath}
	_ = filepath.Walk(p.dataDir, func(path string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && strings.HasSuffix(path, ".log") {
			logs = append(logs, path)
		}
		return nil
	})
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		check("log "+l, string(b))
	}
}

// etcdURLFromLog reads the embedded etcd's client URL from pilot's log.
func etcdURLFromLog(t *testing.T, p *pilot) string {
	t.Helper()
	f, err := os.Open(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Msg       string `json:"msg"`
			ClientURL string `json:"client_url"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "embedded etcd ready" {
			return line.ClientURL
		}
	}
	t.Fatal("pilot's log does not give its etcd's URL")
	return ""
}

// TestRevokedFrontgate revokes a running frontgate: pilot must cut its
// stream, refuse every reconnect (also when tried by hand with the
// frontgate's own certificate), and the frontgate must not spin on it.
func TestRevokedFrontgate(t *testing.T) {
	p := startPilot(t)
	createLocalRuntime(t, p)
	p.mustHangar("app", "push", "examples/kv")
	c, job := createCluster(t, p, "kv", map[string]string{"cluster.replica.count": "0"})
	mustSucceed(t, job)
	fgInstance, fgUD := frontgateInstance(t, p)
	connected := func() (bool, string) {
		m, err := p.restGet("/metrics")
		for _, l := range strings.Split(m, "\n") {
			if strings.HasPrefix(l, "hangar_pilot_frontgates_connected ") {
				return strings.TrimSpace(strings.TrimPrefix(l, "hangar_pilot_frontgates_connected ")) != "0", l
			}
		}
		return false, fmt.Sprint("no gauge in /metrics: ", err)
	}
	if ok, line := connected(); !ok {
		t.Fatalf("before the revoke the frontgate should be connected: %s", line)
	}

	out, err := p.hangar("revoke", "frontgate", fgUD.FrontgateID, "--reason", "e2e")
	if err != nil {
		t.Fatalf("hangar revoke: %v\n%s", err, out)
	}
	if !strings.Contains(out, "revoked") {
		t.Fatalf("hangar revoke: %s", out)
	}
	waitFor(t, 30*time.Second, "pilot to drop the revoked frontgate", func() (bool, string) {
		ok, line := connected()
		return !ok, line
	})

	// The frontgate's own certificate, straight from its instance, is
	// refused at the stream by name.
	creds, err := tlsutil.Load(filepath.Join(p.instanceDir(fgInstance), "data", "tls"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(credentials.NewTLS(creds.ClientConfig("127.0.0.1", pki.Identity{}))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := streamv1.NewFrontgateLinkClient(conn).Connect(ctx)
	if err == nil {
		_ = streamrpc.SendHello(st, &streamv1.Hello{Component: "frontgate", Id: fgUD.FrontgateID})
		_, err = st.Recv()
	}
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("the revoked frontgate's certificate opened a stream: %v, want PermissionDenied naming the revocation", err)
	}

	// The real frontgate is refused when it tries again, says so in its
	// log, and backs off to its maximum rather than spinning.
	const refusal = "pilot refuses this frontgate"
	fgLog := filepath.Join(p.instanceDir(fgInstance), "agent.log")
	waitFor(t, 30*time.Second, "the frontgate to log that pilot refuses it", func() (bool, string) {
		b, _ := os.ReadFile(fgLog)
		return strings.Contains(string(b), refusal), tail(string(b), 600)
	})
	if ok, line := connected(); ok {
		t.Fatalf("the revoked frontgate reconnected: %s", line)
	}
	b, _ := os.ReadFile(fgLog)
	if n := strings.Count(string(b), refusal); n > 2 {
		t.Errorf("the frontgate was refused %d times within seconds: it retries without backing off", n)
	}

	// Work behind the revoked frontgate fails at once and says why, rather
	// than retrying until it times out.
	out, err = p.hangar("cluster", "delete", c.Id, "--wait")
	if err == nil || !strings.Contains(out, "revoked") || !strings.Contains(out, "--force") {
		t.Fatalf("a delete behind the revoked frontgate: %v\n%s\nwant a failure naming the revocation and --force", err, out)
	}

	// What the refusal tells the operator to do works: a forced delete of
	// the cluster behind the revoked frontgate ends, and takes every
	// instance, the frontgate's included, with it.
	before := instanceDirs(t, p)
	out = p.mustHangar("cluster", "delete", c.Id, "--force", "--wait")
	if left := instanceDirs(t, p); len(left) > 0 {
		t.Errorf("instances left after the forced delete: %v\n%s", left, out)
	}
	if pids := processesOf(before...); len(pids) > 0 {
		t.Errorf("processes left after the forced delete: %v", pids)
	}

	// The runtime is usable again: the next cluster gets a new network and
	// a new frontgate, which the revocation does not touch.
	_, job = createCluster(t, p, "kv", map[string]string{"cluster.replica.count": "0"})
	mustSucceed(t, job)
	if _, fg := frontgateInstance(t, p); fg.FrontgateID == fgUD.FrontgateID {
		t.Fatalf("the new cluster is served by the revoked frontgate %s", fg.FrontgateID)
	}
}

// joinRequest is what an instance holding token sends to join with csr.
func joinRequest(t *testing.T, token string, csr []byte) *streamv1.JoinRequest {
	t.Helper()
	r, err := jointoken.Request(token, csr)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
