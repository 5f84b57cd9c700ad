package apppkg

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// roleRe limits role names to what is safe in metadata paths and hostnames.
var roleRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// Allowed values of enumerated cluster.json fields.
func containerTypes() []string { return []string{"kvm", "docker", "lxc"} }
func filesystems() []string    { return []string{"ext4", "xfs", "ntfs"} }
func advancedActions() []string {
	return []string{"scale_horizontal", "add_nodes", "change_vxnet", "change_subnet", "associate_eip", "attach_keypairs"}
}
func statisticsTypes() []string {
	return []string{"min", "max", "avg", "delta", "rate", "mode", "median", "latest"}
}

// Documented limits.
const (
	maxMountPoints      = 3
	maxMonitorItems     = 50
	maxMonitorGroupSize = 5
	maxDisplayTabs      = 5
	maxDisplayTabSec    = 10
	maxUpdateNamesSec   = 30
)

// normalize fills defaults that depend on other fields.
func normalize(s *ClusterSpec) {
	for i := range s.Nodes {
		v := s.Nodes[i].Volume
		if v == nil {
			continue
		}
		if len(v.MountPoint) == 0 {
			v.MountPoint = MountPoints{"/data"}
		}
		if v.Filesystem == "" {
			v.Filesystem = "ext4"
		}
		if v.MountOptions == "" {
			switch v.Filesystem {
			case "ext4":
				v.MountOptions = "defaults,noatime"
			case "xfs":
				v.MountOptions = "rw,noatime,inode64,allocsize=16m"
			}
		}
	}
}

// checker collects semantic errors, each naming its field.
type checker struct{ errs []error }

func (c *checker) fail(path, format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}

func (c *checker) oneOf(path, v string, allowed []string) {
	if v != "" && !contains(allowed, v) {
		c.fail(path, "%q is not allowed; allowed: %s", v, strings.Join(allowed, ", "))
	}
}

func (c *checker) nonNegative(path string, v int) {
	if v < 0 {
		c.fail(path, "%d: must be 0 or more", v)
	}
}

// segment checks a name that becomes one metadata path segment.
func (c *checker) segment(path, v string) {
	if v == "" || strings.ContainsAny(v, "/\x00") || v == "." || v == ".." || strings.TrimSpace(v) != v {
		c.fail(path, "%q: must be non-empty, without '/' or surrounding spaces (it becomes a metadata path segment)", v)
	}
}

// checkSpec applies the rules of docs/appcenter-format.md §1 that JSON types do
// not express. lint skips the rules that depend on the user's values.
func checkSpec(s *ClusterSpec, lint bool) error {
	c := &checker{}
	if len(s.Nodes) == 0 {
		c.fail("nodes", "at least one node entry is required")
	}
	roles := map[string]int{}
	total := 0
	for i := range s.Nodes {
		n := &s.Nodes[i]
		p := fmt.Sprintf("nodes[%d]", i)
		// Services no operation of Hangar runs yet: say so, rather than
		// keep them silently.
		if _, ok := n.Services[SvcDeleteSnapshot]; ok {
			s.Warnings = append(s.Warnings, p+".services.delete_snapshot: accepted, but never run: Hangar does not delete backups yet")
		}
		if _, ok := n.Services[SvcGetNodesOrder]; ok {
			s.Warnings = append(s.Warnings, p+".services.get_nodes_order: accepted, but never run: Hangar orders nodes by sid in sequential operations")
		}
		if n.Replica > 0 {
			// Running the role without its replicas would look like it
			// worked; refuse it until replicas exist.
			c.fail(p+".replica", "%d: replicas per primary (role %s-replica) are not supported yet; declare the replicas as a role of their own", n.Replica, n.Role)
		}
		if n.Role == "" && len(s.Nodes) > 1 {
			c.fail(p+".role", "required when cluster.json has several node entries")
		}
		if n.Role != "" {
			if !roleRe.MatchString(n.Role) {
				c.fail(p+".role", "%q: letters, digits, '_', '.' and '-' only, starting with a letter or digit", n.Role)
			}
			if strings.HasSuffix(n.Role, "-replica") {
				c.fail(p+".role", "%q: the suffix -replica is reserved for replicas", n.Role)
			}
		}
		if j, dup := roles[n.Role]; dup {
			c.fail(p+".role", "%q is already used by nodes[%d]", n.Role, j)
		}
		roles[n.Role] = i
		checkNode(c, p, n)
		total += n.Count
	}
	if !lint && len(s.Nodes) > 0 && total <= 0 {
		c.fail("nodes", "the total node count is %d; at least one node is required (set cluster.<role>.count)", total)
	}
	for name := range s.Links {
		c.segment("links."+name, name)
	}
	for name, e := range s.Endpoints {
		p := childPath("endpoints", name)
		c.segment(p, name)
		if e.Port.Ref == "" && (e.Port.Number < 0 || e.Port.Number > 65535) {
			c.fail(p+".port", "%d: must be 0..65535", e.Port.Number)
		}
		if _, err := s.resolvePort(name, e.Port); err != nil {
			c.errs = append(c.errs, err)
		}
	}
	for k := range s.Env {
		c.segment(childPath("env", k), k)
	}
	for i, a := range s.AdvancedActions {
		c.oneOf(fmt.Sprintf("advanced_actions[%d]", i), a, advancedActions())
	}
	c.oneOf("backup_policy", s.BackupPolicy, []string{"device", "custom"})
	c.oneOf("upgrading_policy", s.UpgradingPolicy, []string{"parallel", "sequential", "in-place-parallel", "in-place-sequential"})
	if s.MetadataRootAccess {
		// Every cluster's metadata open to one cluster's nodes: Hangar's
		// frontgates give a drone its own cluster's tree only (and the
		// trees of the clusters it links to, under /self/links).
		c.fail("metadata_root_access", "true is not supported: a node reads only its own cluster's metadata (and linked clusters' under /self/links/<name>); link the clusters the app needs instead")
	}
	if len(s.InPlaceUpgradeNodes) > 0 && !strings.HasPrefix(s.UpgradingPolicy, "in-place-") {
		c.fail("in-place-upgrade-nodes", "applies only with upgrading_policy in-place-parallel or in-place-sequential")
	}
	if s.HealthCheck != nil {
		checkHealth(c, "health_check", s.HealthCheck)
	}
	if s.Monitor != nil {
		checkMonitor(c, "monitor", s.Monitor)
	}
	if len(s.DisplayTabs) > maxDisplayTabs {
		c.fail("display_tabs", "%d tabs; at most %d", len(s.DisplayTabs), maxDisplayTabs)
	}
	for name, t := range s.DisplayTabs {
		p := childPath("display_tabs", name)
		if strings.TrimSpace(t.Cmd) == "" {
			c.fail(p+".cmd", "required")
		}
		if t.Timeout < 0 || t.Timeout > maxDisplayTabSec {
			c.fail(p+".timeout", "%d: must be 0..%d seconds", t.Timeout, maxDisplayTabSec)
		}
		for j, r := range t.RolesToExecuteOn {
			if _, ok := roles[r]; !ok {
				c.fail(fmt.Sprintf("%s.roles_to_execute_on[%d]", p, j), "%q: no such role", r)
			}
		}
	}
	if as := s.AdvancedServices; as != nil && as.UpdateNodesNames != nil {
		u := as.UpdateNodesNames
		if strings.TrimSpace(u.Cmd) == "" {
			c.fail("advanced_services.update_nodes_names.cmd", "required")
		}
		if u.Timeout < 0 || u.Timeout > maxUpdateNamesSec {
			c.fail("advanced_services.update_nodes_names.timeout", "%d: must be 0..%d seconds", u.Timeout, maxUpdateNamesSec)
		}
	}
	// Maps are walked in random order; sort so one package always gives
	// the same message.
	sort.Slice(c.errs, func(i, j int) bool { return c.errs[i].Error() < c.errs[j].Error() })
	return errors.Join(c.errs...)
}

func checkNode(c *checker, p string, n *NodeSpec) {
	c.oneOf(p+".container.type", n.Container.Type, containerTypes())
	c.nonNegative(p+".count", n.Count)
	c.nonNegative(p+".cpu", n.CPU)
	c.nonNegative(p+".memory", n.Memory)
	c.nonNegative(p+".gpu", n.GPU)
	c.nonNegative(p+".gpu_class", n.GPUClass)
	c.nonNegative(p+".instance_class", n.InstanceClass)
	c.nonNegative(p+".replica", n.Replica)
	c.nonNegative(p+".server_id_upper_bound", n.ServerIDUpperBound)
	c.nonNegative(p+".max_in_flight", n.MaxInFlight)
	c.nonNegative(p+".canary", n.Canary)
	if n.ServerIDUpperBound > 0 && n.Count > n.ServerIDUpperBound {
		c.fail(p+".count", "%d nodes exceed server_id_upper_bound %d", n.Count, n.ServerIDUpperBound)
	}
	if n.Serial && n.MaxInFlight > 0 {
		c.fail(p+".max_in_flight", "set together with serial; use one of them")
	}
	if n.Passphraseless == "ssh-dsa" {
		// OpenSSH has refused DSA keys since 7.0 (2015): keys Hangar made
		// would not let the nodes in.
		c.fail(p+".passphraseless", `"ssh-dsa": DSA keys are refused by OpenSSH; use "ssh-rsa"`)
	} else {
		c.oneOf(p+".passphraseless", n.Passphraseless, []string{"ssh-rsa"})
	}
	c.oneOf(p+".vertical_scaling_policy", n.VerticalScalingPolicy, []string{"parallel", "sequential"})
	for i, a := range n.AdvancedActions {
		c.oneOf(fmt.Sprintf("%s.advanced_actions[%d]", p, i), a, advancedActions())
	}
	if v := n.Volume; v != nil {
		c.nonNegative(p+".volume.size", v.Size)
		c.nonNegative(p+".volume.class", v.Class)
		c.oneOf(p+".volume.filesystem", v.Filesystem, filesystems())
		if len(v.MountPoint) > maxMountPoints {
			c.fail(p+".volume.mount_point", "%d mount points; at most %d", len(v.MountPoint), maxMountPoints)
		}
		seen := map[string]bool{}
		for j, mp := range v.MountPoint {
			mpp := fmt.Sprintf("%s.volume.mount_point[%d]", p, j)
			if !strings.HasPrefix(mp, "/") && !isDriveLetter(mp) {
				c.fail(mpp, "%q: must be an absolute path (or a Windows drive such as d:)", mp)
			}
			if seen[mp] {
				c.fail(mpp, "%q appears twice", mp)
			}
			seen[mp] = true
		}
	}
	for k := range n.Env {
		c.segment(childPath(p+".env", k), k)
	}
	hasCmd := false
	for name, svc := range n.Services {
		checkService(c, childPath(p+".services", name), name, svc)
		hasCmd = hasCmd || strings.TrimSpace(svc.Cmd) != ""
	}
	if !n.AgentInstalled && hasCmd {
		c.fail(p+".agent_installed", "false, but the role has services with commands, which need the agent")
	}
	if n.HealthCheck != nil {
		checkHealth(c, p+".health_check", n.HealthCheck)
	}
	if n.Monitor != nil {
		checkMonitor(c, p+".monitor", n.Monitor)
	}
}

func isDriveLetter(s string) bool {
	return len(s) == 2 && s[1] == ':' && (s[0] >= 'd' && s[0] <= 'z' || s[0] >= 'D' && s[0] <= 'Z')
}

func checkService(c *checker, p, name string, s Service) {
	if name == "" || strings.ContainsAny(name, "/ \t\n") {
		c.fail(p, "service names must be non-empty, without '/' or spaces")
	}
	system := contains(SystemServices(), name)
	switch {
	case s.Type != "" && s.Type != "custom":
		c.fail(p+".type", "%q is not allowed; allowed: custom", s.Type)
	case !system && s.Type != "custom":
		c.fail(p, `not a system service (%s); a custom service needs "type": "custom"`, strings.Join(SystemServices(), ", "))
	case system && s.Type == "custom":
		c.fail(p+".type", "%s is a system service; custom services need another name", name)
	}
	if s.IsCustom() && strings.TrimSpace(s.Cmd) == "" {
		c.fail(p+".cmd", "required for a custom service")
	}
	if s.Timeout < 1 || s.Timeout > MaxServiceTimeout {
		c.fail(p+".timeout", "%d: must be 1..%d seconds (default %d)", s.Timeout, MaxServiceTimeout, DefaultServiceTimeout)
	}
	c.nonNegative(p+".order", s.Order)
	c.nonNegative(p+".nodes_to_execute_on", s.NodesToExecuteOn)
	// Fields that only mean something on some services: set elsewhere they
	// would be ignored, so refuse them.
	if s.PostStartService && name != SvcInit && name != SvcUpgrade {
		c.fail(p+".post_start_service", "applies only to init and upgrade")
	}
	if s.PostStopService && name != SvcDestroy {
		c.fail(p+".post_stop_service", "applies only to destroy")
	}
	if !s.AllowForce && name != SvcDestroy {
		c.fail(p+".allow_force", "applies only to destroy")
	}
	if s.PreCheck != "" && name != SvcScaleIn && name != SvcScaleOut && name != SvcUpgrade {
		c.fail(p+".pre_check", "applies only to scale_in, scale_out and upgrade")
	}
	if len(s.Event) > 0 && name != SvcGetNodesOrder {
		c.fail(p+".event", "applies only to get_nodes_order")
	}
	if s.WithReplica {
		// Replicas (a node's replica) are refused, so there are none to
		// back up or restore with.
		c.fail(p+".with_replica", "true is not supported: replicas per primary are not supported yet")
	}
	if s.WithReplica && name != SvcBackup && name != SvcRestore {
		c.fail(p+".with_replica", "applies only to backup and restore")
	}
	if s.Selector != "" && name != SvcBackup {
		c.fail(p+".selector", "applies only to backup")
	}
}

func checkHealth(c *checker, p string, h *HealthCheck) {
	// AppCenter wants interval_sec ≥ 60 and timeout_sec ≥ 3; Hangar's
	// drone checks on its own clock, so shorter intervals cost nothing
	// but the checks themselves (docs/health-and-scaling.md). Every
	// package AppCenter accepts passes.
	if h.IntervalSec < 1 {
		c.fail(p+".interval_sec", "%d: must be 1 or more", h.IntervalSec)
	}
	if h.TimeoutSec < 1 || h.TimeoutSec > h.IntervalSec {
		c.fail(p+".timeout_sec", "%d: must be 1..interval_sec (%d)", h.TimeoutSec, h.IntervalSec)
	}
	if h.ActionTimeoutSec < 3 {
		c.fail(p+".action_timeout_sec", "%d: must be 3 or more", h.ActionTimeoutSec)
	}
	if h.HealthyThreshold < 2 {
		c.fail(p+".healthy_threshold", "%d: must be 2 or more", h.HealthyThreshold)
	}
	if h.UnhealthyThreshold < 2 {
		c.fail(p+".unhealthy_threshold", "%d: must be 2 or more", h.UnhealthyThreshold)
	}
	if h.Enable && strings.TrimSpace(h.CheckCmd) == "" {
		c.fail(p+".check_cmd", "required when enable is true")
	}
}

func checkMonitor(c *checker, p string, m *Monitor) {
	if m.IntervalSec < 1 {
		// A Hangar extension (docs/health-and-scaling.md#metrics).
		c.fail(p+".interval_sec", "%d: must be 1 or more (default %d)", m.IntervalSec, DefaultMonitorIntervalSec)
	}
	if len(m.Items) > maxMonitorItems {
		c.fail(p+".items", "%d items; at most %d", len(m.Items), maxMonitorItems)
	}
	for name, it := range m.Items {
		ip := childPath(p+".items", name)
		if strings.TrimSpace(name) == "" {
			c.fail(ip, "an item needs a name (the key the cmd prints)")
		}
		if it.ValueType == "" {
			c.fail(ip+".value_type", "empty; allowed: int, str")
		}
		c.oneOf(ip+".value_type", it.ValueType, []string{"int", "str"})
		if it.StatisticsType == "" {
			c.fail(ip+".statistics_type", "empty; allowed: %s", strings.Join(statisticsTypes(), ", "))
		}
		c.oneOf(ip+".statistics_type", it.StatisticsType, statisticsTypes())
		if it.ValueType == "str" {
			c.oneOf(ip+".statistics_type", it.StatisticsType, []string{"mode", "latest"})
		}
		if it.ScaleFactorWhenDisplay <= 0 {
			c.fail(ip+".scale_factor_when_display", "%v: must be above 0 (default 1)", it.ScaleFactorWhenDisplay)
		}
		seen := map[string]bool{}
		for j, e := range it.Enums {
			if seen[e] {
				c.fail(fmt.Sprintf("%s.enums[%d]", ip, j), "%q: listed twice", e)
			}
			seen[e] = true
		}
	}
	for name, members := range m.Groups {
		gp := childPath(p+".groups", name)
		if len(members) < 1 || len(members) > maxMonitorGroupSize {
			c.fail(gp, "%d items; a group holds 1..%d", len(members), maxMonitorGroupSize)
		}
		for j, it := range members {
			if _, ok := m.Items[it]; !ok {
				c.fail(fmt.Sprintf("%s[%d]", gp, j), "%q: no such item", it)
			}
		}
	}
	for j, d := range m.Display {
		_, isItem := m.Items[d]
		_, isGroup := m.Groups[d]
		if !isItem && !isGroup {
			c.fail(fmt.Sprintf("%s.display[%d]", p, j), "%q: no such item or group", d)
		}
	}
	for j, a := range m.Alarm {
		if _, ok := m.Items[a]; !ok {
			c.fail(fmt.Sprintf("%s.alarm[%d]", p, j), "%q: no such item", a)
		}
	}
	if m.Enable && strings.TrimSpace(m.Cmd) == "" {
		c.fail(p+".cmd", "required when enable is true")
	}
}
