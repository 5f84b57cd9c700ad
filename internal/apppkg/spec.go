package apppkg

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// ClusterSpec is a rendered cluster.json (docs/appcenter-format.md §1.2–1.5).
//
// Struct tags drive the strict decoder: `json` names the field, and
// `hangar:"notyet"` marks documented fields that are kept but not yet acted
// on, which produce a warning when set.
type ClusterSpec struct {
	Name        string              `json:"name"`
	Description string              `json:"description"`
	VXNet       string              `json:"vxnet"`
	Subnet      string              `json:"subnet"` // OpenPitrix's name for vxnet; VXNet is set from it when empty
	Links       map[string]string   `json:"links"`  // name -> linked cluster id ("" = not linked)
	Env         Env                 `json:"env"`
	Endpoints   map[string]Endpoint `json:"endpoints"`
	Nodes       []NodeSpec          `json:"nodes"`
	// AdvancedActions gates operations: scale_horizontal allows adding and
	// deleting nodes; nodes may also list their own.
	AdvancedActions []string `json:"advanced_actions"`

	ReservedIPs                map[string]ReservedIP `json:"endpoints.reserved_ips"` // endpoints.reserved_ips in cluster.json; reserved by the provider
	HealthCheck                *HealthCheck          `json:"health_check"`
	Monitor                    *Monitor              `json:"monitor"`
	BackupPolicy               string                `json:"backup_policy"`
	IncrementalBackupSupported bool                  `json:"incremental_backup_supported"` // allows hangar cluster backup --incremental
	UpgradePolicy              []string              `json:"upgrade_policy"`
	UpgradingPolicy            string                `json:"upgrading_policy"`
	// InPlaceUpgradeNodes names the nodes an in-place upgrade keeps:
	// Hangar keeps every instance through an upgrade, so each node is
	// upgraded in place whatever it lists.
	InPlaceUpgradeNodes json.RawMessage       `json:"in-place-upgrade-nodes"`
	AdvancedServices    *AdvancedServices     `json:"advanced_services"`    // update_nodes_names runs after create and scale-out
	MetadataRootAccess  bool                  `json:"metadata_root_access"` // true is refused (check.go)
	DisplayTabs         map[string]DisplayTab `json:"display_tabs"`         // hangar cluster tab

	// PlatformHints holds the QingCloud platform hints found, as given. They
	// mean nothing outside QingCloud; each one also produced a warning.
	PlatformHints map[string]json.RawMessage `hangar:"hints=need_tag,need_intranet_api_server,exclude_node_columns,unsupported_actions,add_links,upgrade_roles,multi_zone_policy,app_id,version_id,global_uuid,debug"`

	// Warnings lists what this rendering accepted without acting on it.
	Warnings []string `json:"-"`

	// rendered is the JSON the template rendered to (Stored).
	rendered []byte
}

// Endpoint is one service a cluster offers (endpoints.<name>).
type Endpoint struct {
	Port     Port   `json:"port"`
	Protocol string `json:"protocol"`
}

// Port is an endpoint port: a number, or a reference to an env parameter
// ("env.port" or "<role>.env.port") that follows later env changes.
type Port struct {
	Number int
	Ref    string
}

// UnmarshalJSON accepts a number, a numeric string or a reference string.
func (p *Port) UnmarshalJSON(b []byte) error {
	var n json.Number
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return err
	}
	switch x := v.(type) {
	case json.Number:
		n = x
	case string:
		if i, err := strconv.Atoi(x); err == nil {
			*p = Port{Number: i}
			return nil
		}
		*p = Port{Ref: x}
		return nil
	default:
		return fmt.Errorf(`want a port number or a reference like "env.port", got %s`, jsonKind(v))
	}
	i, err := strconv.Atoi(n.String())
	if err != nil {
		return fmt.Errorf("want an integer port, got %s", n)
	}
	*p = Port{Number: i}
	return nil
}

// ReservedIP is an address a cluster asks the platform to reserve.
type ReservedIP struct {
	Value string `json:"value"`
}

// Env is an env block. Metadata leaves are strings, so every value is kept
// in its string form: strings as they are, numbers as written, booleans as
// true/false, null as "", arrays and objects as compact JSON.
type Env map[string]string

// UnmarshalJSON converts each value to its string form.
func (e *Env) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil {
		return fmt.Errorf("want an object of parameters: %w", err)
	}
	out := make(Env, len(raw))
	for k, v := range raw {
		switch x := v.(type) {
		case json.Number:
			out[k] = x.String()
		default:
			out[k] = stringForm(x)
		}
	}
	*e = out
	return nil
}

// NodeSpec is one role of the cluster (one entry of nodes).
type NodeSpec struct {
	Role          string    `json:"role"` // "" for a role-less app
	Container     Container `json:"container"`
	Count         int       `json:"count"`
	CPU           int       `json:"cpu"`
	Memory        int       `json:"memory"` // MiB
	GPU           int       `json:"gpu"`
	GPUClass      int       `json:"gpu_class"`
	CPUModel      string    `json:"cpu_model"`
	InstanceClass int       `json:"instance_class"`
	Volume        *Volume   `json:"volume"` // nil: system disk only
	// ServerIDUpperBound caps sid (0: no cap).
	ServerIDUpperBound int                `json:"server_id_upper_bound"`
	AgentInstalled     bool               `json:"agent_installed"` // default true; false: no commands run on the role
	Env                Env                `json:"env"`
	Services           map[string]Service `json:"services"`
	AdvancedActions    []string           `json:"advanced_actions"`

	// Hangar additions: how a service runs across this role's nodes
	// within its order group. Serial runs one node at a time;
	// MaxInFlight bounds parallel nodes (0: all); Canary runs that many
	// nodes first and stops on their failure.
	Serial      bool `json:"serial"`
	MaxInFlight int  `json:"max_in_flight"`
	Canary      int  `json:"canary"`

	Replica               int                   `json:"replica"`        // above 0 is refused (check.go)
	Passphraseless        string                `json:"passphraseless"` // ssh-rsa: the role's nodes share a key pair (pilot/clusterops)
	VerticalScalingPolicy string                `json:"vertical_scaling_policy"`
	UserAccess            bool                  `json:"user_access"` // its instances stay up when the cluster stops
	CustomMetadata        *CustomMetadata       `json:"custom_metadata"`
	ReservedIPs           map[string]ReservedIP `json:"reserved_ips"` // reserved by the provider
	Loadbalancer          []json.RawMessage     `json:"loadbalancer" hangar:"notyet"`
	HealthCheck           *HealthCheck          `json:"health_check"`
	Monitor               *Monitor              `json:"monitor"`

	// PlatformHints holds QingCloud's resource requests for the role's
	// instances (an EIP's billing class, an extra quota), as given: no
	// runtime of Hangar's has them; each produced a warning.
	PlatformHints map[string]json.RawMessage `hangar:"hints=eip_class,extra_quota"`
}

func (n *NodeSpec) setDefaults() { n.AgentInstalled = true }

// Service returns the role's service name; ok is false when the role lacks
// it or its cmd is empty (such a role is skipped for that service).
func (n NodeSpec) Service(name string) (Service, bool) {
	s, ok := n.Services[name]
	if !ok || strings.TrimSpace(s.Cmd) == "" {
		return Service{}, false
	}
	return s, true
}

// Container says what an instance of the role runs.
type Container struct {
	Type  string `json:"type"`  // kvm, docker or lxc
	Image string `json:"image"` // image id or docker reference; empty: the image map decides
	Zone  string `json:"zone"`
}

// Volume is a role's data volume.
type Volume struct {
	Size         int         `json:"size"` // GiB per node, split over the mount points
	MountPoint   MountPoints `json:"mount_point"`
	MountOptions string      `json:"mount_options"`
	Filesystem   string      `json:"filesystem"`
	Class        int         `json:"class"`
	// InstanceSize is OpenPitrix's size of a local instance disk.
	InstanceSize int `json:"instance_size" hangar:"notyet"`
}

// MountPoints is one mount point or a list of up to 3.
type MountPoints []string

// UnmarshalJSON accepts a string or an array of strings.
func (m *MountPoints) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		if s == "" {
			*m = nil
		} else {
			*m = MountPoints{s}
		}
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return fmt.Errorf("want a path or an array of paths")
	}
	*m = list
	return nil
}

// System service names; any other service must be "type": "custom".
const (
	SvcInit           = "init"
	SvcStart          = "start"
	SvcStop           = "stop"
	SvcRestart        = "restart"
	SvcScaleOut       = "scale_out"
	SvcScaleIn        = "scale_in"
	SvcDestroy        = "destroy"
	SvcUpgrade        = "upgrade"
	SvcRollback       = "rollback"
	SvcBackup         = "backup"
	SvcRestore        = "restore"
	SvcDeleteSnapshot = "delete_snapshot"
	SvcGetNodesOrder  = "get_nodes_order"
)

// SystemServices returns the services the platform runs by itself.
func SystemServices() []string {
	return []string{SvcInit, SvcStart, SvcStop, SvcRestart, SvcScaleOut, SvcScaleIn, SvcDestroy,
		SvcUpgrade, SvcRollback, SvcBackup, SvcRestore, SvcDeleteSnapshot, SvcGetNodesOrder}
}

// Service timeouts in seconds.
const (
	DefaultServiceTimeout = 600
	MaxServiceTimeout     = 86400
)

// Service is one entry of a role's services.
type Service struct {
	Type string `json:"type"` // "custom" for user-triggered services, else ""
	Cmd  string `json:"cmd"`
	// Order groups nodes: groups run in ascending order, equal orders in
	// parallel across roles.
	Order   int `json:"order"`
	Timeout int `json:"timeout"` // seconds; default 600, at most 86400
	// NodesToExecuteOn limits the run to that many nodes of the role (0: all).
	NodesToExecuteOn int    `json:"nodes_to_execute_on"`
	PostStartService bool   `json:"post_start_service"` // init, upgrade: run after start
	PostStopService  bool   `json:"post_stop_service"`  // destroy: run after stop
	PreCheck         string `json:"pre_check"`          // scale_in, scale_out (and upgrade): refuses the operation on non-zero exit
	AllowForce       bool   `json:"allow_force"`        // destroy: a forced delete goes on despite a failure; default true
	// ServiceParams are the parameters the command receives as one JSON
	// object argument, with the values rendered from config.json.
	ServiceParams map[string]any  `json:"service_params"`
	Event         json.RawMessage `json:"event"`        // get_nodes_order
	WithReplica   bool            `json:"with_replica"` // true is refused (check.go)
	Selector      string          `json:"selector"`     // backup: prints the node to back up (service.go)

	// ParamPaths maps a ServiceParams name to the config.json parameter
	// whose value it carries, where the template makes that known.
	ParamPaths map[string]string `json:"-"`
}

func (s *Service) setDefaults() {
	s.Timeout = DefaultServiceTimeout
	s.AllowForce = true
}

// IsCustom reports a user-triggered service.
func (s Service) IsCustom() bool { return s.Type == "custom" }

// HealthCheck is a health_check block, with the documented defaults filled.
type HealthCheck struct {
	Enable             bool   `json:"enable"`
	IntervalSec        int    `json:"interval_sec"`
	TimeoutSec         int    `json:"timeout_sec"`
	ActionTimeoutSec   int    `json:"action_timeout_sec"`
	HealthyThreshold   int    `json:"healthy_threshold"`
	UnhealthyThreshold int    `json:"unhealthy_threshold"`
	CheckCmd           string `json:"check_cmd"`
	ActionCmd          string `json:"action_cmd"`
}

func (h *HealthCheck) setDefaults() {
	*h = HealthCheck{IntervalSec: 60, TimeoutSec: 10, ActionTimeoutSec: 30, HealthyThreshold: 3, UnhealthyThreshold: 3}
}

// Monitor is a monitor block: the drone runs Cmd every IntervalSec and
// reports the items it prints (docs/health-and-scaling.md#metrics).
type Monitor struct {
	Enable bool   `json:"enable"`
	Cmd    string `json:"cmd"`
	// IntervalSec is a Hangar extension (AppCenter does not document the
	// collection interval): default DefaultMonitorIntervalSec, at least 1.
	IntervalSec int                    `json:"interval_sec"`
	Items       map[string]MonitorItem `json:"items"`
	Groups      map[string][]string    `json:"groups"`
	Display     []string               `json:"display"`
	Alarm       []string               `json:"alarm"`
}

// DefaultMonitorIntervalSec is how often a drone runs the monitor command
// and samples its host when the package does not say.
const DefaultMonitorIntervalSec = 10

func (m *Monitor) setDefaults() { *m = Monitor{IntervalSec: DefaultMonitorIntervalSec} }

// MonitorItem describes one metric the monitor cmd prints.
type MonitorItem struct {
	Unit                   string   `json:"unit"`
	ValueType              string   `json:"value_type"`      // int (default) or str
	StatisticsType         string   `json:"statistics_type"` // min max avg delta rate mode median latest (default)
	ScaleFactorWhenDisplay float64  `json:"scale_factor_when_display"`
	Enums                  []string `json:"enums"`
}

func (m *MonitorItem) setDefaults() {
	*m = MonitorItem{ValueType: "int", StatisticsType: "latest", ScaleFactorWhenDisplay: 1}
}

// CustomMetadata is a role's custom_metadata block.
type CustomMetadata struct {
	Cmd string `json:"cmd"`
}

// AdvancedServices is the advanced_services block.
type AdvancedServices struct {
	UpdateNodesNames *TimedCmd `json:"update_nodes_names"`
}

// GetUpdateNodesNames is UpdateNodesNames, nil-safe.
func (a *AdvancedServices) GetUpdateNodesNames() *TimedCmd {
	if a == nil {
		return nil
	}
	return a.UpdateNodesNames
}

// TimedCmd is a command with a timeout in seconds.
type TimedCmd struct {
	Cmd     string `json:"cmd"`
	Timeout int    `json:"timeout"`
}

// DisplayTab is one entry of display_tabs.
type DisplayTab struct {
	Cmd              string   `json:"cmd"`
	RolesToExecuteOn []string `json:"roles_to_execute_on"`
	Description      string   `json:"description"`
	Timeout          int      `json:"timeout"`
}

// Node returns the role's entry; role "" finds a role-less app's node.
func (s *ClusterSpec) Node(role string) (NodeSpec, bool) {
	for _, n := range s.Nodes {
		if n.Role == role {
			return n, true
		}
	}
	return NodeSpec{}, false
}

// Roles returns the node roles in cluster.json order.
func (s *ClusterSpec) Roles() []string {
	out := make([]string, 0, len(s.Nodes))
	for _, n := range s.Nodes {
		out = append(out, n.Role)
	}
	return out
}

// AllowsAction reports whether advanced_actions at cluster level or in the
// role's node allow action (e.g. "scale_horizontal").
func (s *ClusterSpec) AllowsAction(role, action string) bool {
	if contains(s.AdvancedActions, action) {
		return true
	}
	n, ok := s.Node(role)
	return ok && contains(n.AdvancedActions, action)
}

// EndpointPort returns the port of endpoint name as a string, following a
// reference to env ("env.port") or to a role's env ("<role>.env.port").
func (s *ClusterSpec) EndpointPort(name string) (string, error) {
	e, ok := s.Endpoints[name]
	if !ok {
		return "", fmt.Errorf("endpoint %q: not declared", name)
	}
	return s.resolvePort(name, e.Port)
}

func (s *ClusterSpec) resolvePort(name string, p Port) (string, error) {
	if p.Ref == "" {
		return strconv.Itoa(p.Number), nil
	}
	if key, ok := strings.CutPrefix(p.Ref, "env."); ok {
		if v, ok := s.Env[key]; ok {
			return v, nil
		}
		return "", fmt.Errorf("endpoints.%s.port: %q: the cluster env has no %q", name, p.Ref, key)
	}
	if role, key, ok := strings.Cut(p.Ref, ".env."); ok {
		n, found := s.Node(role)
		if !found {
			return "", fmt.Errorf("endpoints.%s.port: %q: no role %q", name, p.Ref, role)
		}
		if v, ok := n.Env[key]; ok {
			return v, nil
		}
		return "", fmt.Errorf("endpoints.%s.port: %q: role %s's env has no %q", name, p.Ref, role, key)
	}
	return "", fmt.Errorf(`endpoints.%s.port: %q: want a number, "env.<key>" or "<role>.env.<key>"`, name, p.Ref)
}

// EndpointNames returns the endpoint names, sorted.
func (s *ClusterSpec) EndpointNames() []string {
	out := make([]string, 0, len(s.Endpoints))
	for n := range s.Endpoints {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
