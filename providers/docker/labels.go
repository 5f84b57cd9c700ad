package docker

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"strconv"
	"strings"

	"github.com/moby/moby/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Labels the provider puts on what it creates. The caller's labels (pilot:
// hangar/cluster, hangar/role, hangar/node) are set too, verbatim, so
// `docker ps --filter label=hangar/cluster=…` finds a cluster's containers;
// their keys are listed in labelKeys so GetInstance answers exactly them.
const (
	labelPrefix  = "hangar.docker/"
	labelKind    = labelPrefix + "kind" // network, instance, volume, volume-part
	labelRuntime = labelPrefix + "runtime"
	labelToken   = labelPrefix + "token"
	labelName    = labelPrefix + "name"
	labelNetwork = labelPrefix + "network"
	labelImage   = labelPrefix + "image"
	labelAddress = labelPrefix + "address"
	labelVolume  = labelPrefix + "volume"
	labelVolGiB  = labelPrefix + "volume-gib"
	labelKeys    = labelPrefix + "labels"
	labelMounts  = labelPrefix + "mount-points"
	// The resources an instance was created with; what it has since is
	// in its record (instance.go's statePath).
	labelCPU    = labelPrefix + "cpu"
	labelMemory = labelPrefix + "memory-mib"
)

const (
	kindNetwork    = "network"
	kindInstance   = "instance"
	kindVolume     = "volume"
	kindVolumePart = "volume-part"
)

// tokenHash names what a runtime's token creates: the same runtime and
// token always give the same Docker name, which Docker keeps unique for
// containers and volumes.
func tokenHash(runtimeID, token string) string {
	h := sha256.Sum256([]byte(runtimeID + "\x00" + token))
	return hex.EncodeToString(h[:])[:16]
}

func networkName(runtimeID, token string) string  { return "hangar-net-" + tokenHash(runtimeID, token) }
func instanceName(runtimeID, token string) string { return "hangar-" + tokenHash(runtimeID, token) }

// volumeName is the data volume first created for an instance; i > 0
// names the volume of its i+1-th mount point.
func volumeName(instance string, i int) string {
	if i == 0 {
		return instance + "-data"
	}
	return instance + "-data-" + strconv.Itoa(i+1)
}

// base are the labels of everything a runtime owns.
func base(cfg *rtConfig, kind string) map[string]string {
	return map[string]string{labelKind: kind, labelRuntime: cfg.id}
}

// owned filters for what the runtime owns of kind.
func owned(cfg *rtConfig, kind string) client.Filters {
	return make(client.Filters).Add("label", labelKind+"="+kind, labelRuntime+"="+cfg.id)
}

// callerLabels checks the caller's labels and returns them with the key
// list the provider stores beside them.
func callerLabels(in map[string]string) (map[string]string, error) {
	out := map[string]string{}
	keys := make([]string, 0, len(in))
	for k, v := range in {
		if k == "" || strings.HasPrefix(k, labelPrefix) {
			return nil, status.Errorf(codes.InvalidArgument, "labels: key %q is not allowed (empty, or in the provider's %q namespace)", k, labelPrefix)
		}
		out[k] = v
		keys = append(keys, k)
	}
	b, _ := json.Marshal(keys)
	out[labelKeys] = string(b)
	return out, nil
}

// userLabels returns the caller's labels among a container's.
func userLabels(all map[string]string) map[string]string {
	var keys []string
	_ = json.Unmarshal([]byte(all[labelKeys]), &keys)
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		if v, ok := all[k]; ok {
			out[k] = v
		}
	}
	return out
}

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		maps.Copy(out, m)
	}
	return out
}

func atoi32(s string) int32 {
	n, _ := strconv.Atoi(s)
	return int32(n)
}
