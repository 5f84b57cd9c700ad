package clusterops

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/apppkg"
	"github.com/hangarhq/hangar/internal/secretbox"
	"github.com/hangarhq/hangar/pilot/jobs"
	"github.com/hangarhq/hangar/pilot/store"
)

// Upgrading a cluster to another version of its app, and rolling back
// (docs/appcenter-format.md §4, docs/operations.md).
//
// The version upgraded to must list the cluster's version in its
// upgrade_policy and keep its roles. Its upgrading_policy decides the
// shape:
//
//	parallel:   stop by order (the old version's commands) → metadata of
//	            the new version, with upgrade-audit → its confd files on
//	            every node → upgrade by order → start by order → upgrade
//	            on post_start_service roles → metadata without upgrade-audit
//	sequential: metadata of the new version → node by node (role by start
//	            order, then sid): stop (old) → confd → upgrade → start →
//	            post-start upgrade → metadata without upgrade-audit
//
// AppCenter asks the user to stop a cluster before a parallel upgrade;
// Hangar stops it within the job instead (one command, and the stop uses
// the version being left, which only the job still has). The in-place
// policies run as their plain counterparts: instances are kept on every
// runtime Hangar has, so nothing is copied.
//
// Rollback returns to the version the last upgrade came from, in the same
// shape, running the rollback service of the version being left (it knows
// what its upgrade changed) where upgrade ran.

// Job kinds.
const (
	KindUpgrade  = "upgrade_cluster"
	KindRollback = "rollback_cluster"
)

// taskFinishUpgrade clears upgrade-audit from the record and the metadata.
const taskFinishUpgrade = "finish_upgrade"

// Upgrade accepts moving cluster r.C to version of its app.
func (l *Lifecycle) Upgrade(ctx context.Context, r OpRequest, version string) (*pilotv1.ClusterJob, error) {
	c := r.C
	if strings.TrimSpace(version) == "" {
		return nil, refuse(Invalid, "app_version: required; name the version to upgrade to (`hangar app show %s` lists them)", c.App)
	}
	if version == c.AppVersion {
		return nil, refuse(Invalid, "app_version: cluster %s already runs %s %s", c.Id, c.App, version)
	}
	return l.changeVersion(ctx, r, version, KindUpgrade)
}

// Rollback accepts moving cluster r.C back to the version its last upgrade
// came from.
func (l *Lifecycle) Rollback(ctx context.Context, r OpRequest) (*pilotv1.ClusterJob, error) {
	c := r.C
	if c.PreviousAppVersion == "" {
		return nil, refuse(Precondition, "cluster %s has no upgrade to roll back (it runs %s %s as created, or was rolled back already)", c.Id, c.App, c.AppVersion)
	}
	return l.changeVersion(ctx, r, c.PreviousAppVersion, KindRollback)
}

func (l *Lifecycle) changeVersion(ctx context.Context, r OpRequest, version, kind string) (*pilotv1.ClusterJob, error) {
	c := r.C
	if err := l.busy(ctx, c); err != nil {
		return nil, err
	}
	switch c.Status {
	case pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE, pilotv1.ClusterStatus_CLUSTER_STATUS_FAILED:
	default:
		return nil, refuse(Precondition, "cluster %s is %s; an upgrade or rollback runs on an active (or failed) cluster", c.Id, c.Status)
	}
	from, fromStored, err := l.currentSpec(ctx, c)
	if err != nil {
		return nil, refuse(Precondition, "cluster %s: %v", c.Id, err)
	}
	oldPkg, err := l.cfg.Packages.Get(ctx, c.Tenant, c.App, c.AppVersion)
	if err != nil {
		return nil, err
	}
	pkg, pkgRev, err := l.cfg.Packages.GetAt(ctx, c.Tenant, c.App, version)
	if err != nil {
		return nil, refuse(Invalid, "app_version: %s %s is not pushed (`hangar app show %s` lists the versions): %v", c.App, version, c.App, err)
	}
	params, err := secretbox.OpenParams(l.cfg.Packages.Box, c.Id, c.Params, SecretParam(oldPkg))
	if err != nil {
		return nil, refuse(Precondition, "cluster %s stored parameters: %v", c.Id, err)
	}
	// The cluster's values carry over where the new version has the
	// parameter; the others take the new version's defaults.
	kept := map[string]string{}
	for k, v := range params {
		if _, ok := pkg.Config.Item(k); ok {
			kept[k] = v
		}
	}
	secret := SecretParam(pkg)
	vals, err := pkg.Resolve(kept)
	if err != nil {
		return nil, refuse(Invalid, "app_version: the cluster's parameters do not fit %s %s: %s", c.App, version, scrub(err, kept, secret))
	}
	to, stored, err := l.render(pkg, vals, kept, secret)
	if err != nil {
		return nil, err
	}
	if from, _, err := l.currentSpec(ctx, c); err == nil {
		if err := l.checkLinks(ctx, c.Tenant, c.Id, pkg, vals, to, from); err != nil {
			return nil, err
		}
	}
	if kind == KindUpgrade && !allowsUpgradeFrom(to.UpgradePolicy, c.AppVersion) {
		allowed := "none: the version takes no upgrades"
		if len(to.UpgradePolicy) > 0 {
			allowed = strings.Join(to.UpgradePolicy, ", ")
		}
		return nil, refuse(Invalid, "app_version: %s %s's upgrade_policy does not list %s, the cluster's version (it allows upgrades from: %s)", c.App, version, c.AppVersion, allowed)
	}
	if err := sameRoles(c, to); err != nil {
		return nil, refuse(Invalid, "app_version: %s %s: %v", c.App, version, err)
	}
	sequential := strings.HasSuffix(to.UpgradingPolicy, "sequential")
	mid, midSpec, midPrior := "upgrade", to, false
	if kind == KindRollback {
		mid, midSpec, midPrior = "rollback", from, true
	}
	tasks := PlanVersionChange(c, from, to, versionChange{sequential: sequential, service: mid, serviceSpec: midSpec, servicePrior: midPrior})
	leaving := c.AppVersion
	c.AppVersion = version
	c.UpgradingFrom = leaving
	if kind == KindUpgrade {
		c.PreviousAppVersion = leaving
	} else {
		c.PreviousAppVersion = ""
	}
	c.Params = secretbox.SealParams(l.cfg.Packages.Box, c.Id, vals.Strings(), secret)
	if r.DryRun {
		return &pilotv1.ClusterJob{Cluster: c, Job: DryRun(c, to, from, kind, tasks)}, nil
	}
	c.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_UPDATING
	job, err := l.commitGuarded(ctx, c, r.Rev, kind, tasks, stored, fromStored, nil,
		map[string]int64{store.ArchiveKey(c.Tenant, c.App, version): pkgRev})
	if err != nil {
		return nil, err
	}
	l.log.Info("cluster version change accepted", "cluster_id", c.Id, "kind", kind, "from", leaving, "to", version, "sequential", sequential, "job_id", job.Id)
	return &pilotv1.ClusterJob{Cluster: c, Job: job}, nil
}

// allowsUpgradeFrom: upgrade_policy lists versions (AppCenter lists its
// version ids; Hangar's are the package versions).
func allowsUpgradeFrom(policy []string, version string) bool {
	return slices.Contains(policy, version)
}

// sameRoles checks that spec has every role of c, with the same volume
// mount points: an upgrade keeps the nodes and their data.
func sameRoles(c *pilotv1.Cluster, spec *apppkg.ClusterSpec) error {
	var missing []string
	for _, role := range rolesOf(c) {
		if roleSpec(spec, role) == nil {
			missing = append(missing, role)
		}
	}
	if len(missing) > 0 {
		var has []string
		for _, n := range spec.Nodes {
			has = append(has, n.Role)
		}
		sort.Strings(has)
		return fmt.Errorf("it lacks the cluster's roles %s (it has %s); an upgrade keeps the roles and their nodes", strings.Join(missing, ", "), strings.Join(has, ", "))
	}
	return nil
}

// versionChange says how PlanVersionChange moves between versions.
type versionChange struct {
	sequential bool
	// service runs between the new confd files and start (upgrade, or
	// rollback), from serviceSpec (servicePrior: the version being left).
	service      string
	serviceSpec  *apppkg.ClusterSpec
	servicePrior bool
}

// PlanVersionChange is the job moving cluster c from spec from to spec to.
func PlanVersionChange(c *pilotv1.Cluster, from, to *apppkg.ClusterSpec, v versionChange) []*pilotv1.Task {
	p := &planner{}
	in := func() *pilotv1.TaskInput { return &pilotv1.TaskInput{ClusterId: c.Id} }
	if !v.sequential {
		p.serviceSteps(from, c.Id, "stop", stepSpec{priorSpec: true})
		p.add("register", taskRegister, "register metadata of the new version, with upgrade-audit", in())
		p.add("confd", taskDeliverConfd, "deliver the new version's confd templates and render", in())
		p.serviceSteps(v.serviceSpec, c.Id, v.service, stepSpec{postStart: "pre", priorSpec: v.servicePrior})
		p.serviceSteps(to, c.Id, "start", stepSpec{})
		p.serviceSteps(v.serviceSpec, c.Id, v.service, stepSpec{postStart: "post", priorSpec: v.servicePrior})
	} else {
		p.add("register", taskRegister, "register metadata of the new version, with upgrade-audit", in())
		for _, nd := range rollingOrder(c, to) {
			one := []string{nd.Id}
			role := []string{nd.Role}
			pre := fmt.Sprintf("n%d-", nd.Sid)
			p.serviceSteps(from, c.Id, "stop", stepSpec{idPrefix: pre + "stop", priorSpec: true, roles: role, nodeIDs: one})
			p.add(pre+"confd", taskDeliverConfd, fmt.Sprintf("deliver the new version's confd templates to node %s", nd.Id), &pilotv1.TaskInput{ClusterId: c.Id, NodeIds: one})
			p.serviceSteps(v.serviceSpec, c.Id, v.service, stepSpec{idPrefix: pre + v.service, postStart: "pre", priorSpec: v.servicePrior, roles: role, nodeIDs: one})
			p.serviceSteps(to, c.Id, "start", stepSpec{idPrefix: pre + "start", roles: role, nodeIDs: one})
			p.serviceSteps(v.serviceSpec, c.Id, v.service, stepSpec{idPrefix: pre + v.service, postStart: "post", priorSpec: v.servicePrior, roles: role, nodeIDs: one})
		}
	}
	p.add("finish", taskFinishUpgrade, "register metadata without upgrade-audit", in())
	return p.tasks
}

// rollingOrder is the order a sequential upgrade takes the nodes in: role
// by role in the order of their start service, then by server id.
func rollingOrder(c *pilotv1.Cluster, spec *apppkg.ClusterSpec) []*pilotv1.Node {
	order := func(role string) int {
		if rs := roleSpec(spec, role); rs != nil {
			if s, ok := rs.Service("start"); ok {
				return s.Order
			}
		}
		return 0
	}
	nodes := agentNodes(c, spec)
	sort.SliceStable(nodes, func(i, j int) bool {
		a, b := nodes[i], nodes[j]
		if oa, ob := order(a.Role), order(b.Role); oa != ob {
			return oa < ob
		}
		if a.Role != b.Role {
			return a.Role < b.Role
		}
		return a.Sid < b.Sid
	})
	return nodes
}

// finishUpgrade drops upgrade-audit: from the record, then from the
// metadata.
func (o *Ops) finishUpgrade(ctx context.Context, t *jobs.Task) error {
	if _, err := o.updateCluster(ctx, t.Task.GetInput().GetClusterId(), func(c *pilotv1.Cluster) error {
		c.UpgradingFrom = ""
		return nil
	}); err != nil {
		return err
	}
	return o.registerMetadata(ctx, t)
}

// finishVersionChange settles the cluster after an upgrade or rollback: a
// failed one leaves the cluster failed on the new version, from which
// rollback (after an upgrade) or a new upgrade goes on.
func (o *Ops) finishVersionChange(ctx context.Context, j *pilotv1.Job) error {
	_, err := o.updateCluster(ctx, j.ClusterId, func(c *pilotv1.Cluster) error {
		c.UpgradingFrom = ""
		if j.State == pilotv1.JobState_JOB_STATE_SUCCEEDED {
			c.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_ACTIVE
		} else {
			c.Status = pilotv1.ClusterStatus_CLUSTER_STATUS_FAILED
		}
		return nil
	})
	return ignoreNotFound(err)
}
