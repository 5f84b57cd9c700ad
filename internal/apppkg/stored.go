package apppkg

import (
	"encoding/json"
	"errors"
	"fmt"
)

// storedSpec is a rendered spec as pilot keeps it with a job: the JSON the
// template rendered to, and what the render learned beyond it (the
// parameter paths of service_params, by node index, service and name).
type storedSpec struct {
	Rendered   json.RawMessage                      `json:"rendered"`
	ParamPaths map[int]map[string]map[string]string `json:"param_paths,omitempty"`
}

// Stored encodes a spec that Render returned so that DecodeStored gives the
// same spec back without rendering again: pilot renders a cluster's spec
// once per change and its task handlers read it.
func (s *ClusterSpec) Stored() ([]byte, error) {
	if s.rendered == nil {
		return nil, errors.New("stored spec: only a spec Render returned can be stored")
	}
	st := storedSpec{Rendered: s.rendered}
	for i, n := range s.Nodes {
		for name, svc := range n.Services {
			if len(svc.ParamPaths) == 0 {
				continue
			}
			if st.ParamPaths == nil {
				st.ParamPaths = map[int]map[string]map[string]string{}
			}
			if st.ParamPaths[i] == nil {
				st.ParamPaths[i] = map[string]map[string]string{}
			}
			st.ParamPaths[i][name] = svc.ParamPaths
		}
	}
	return json.Marshal(st)
}

// DecodeStored reads a spec Stored encoded. It decodes and checks the
// rendered JSON as Render does, without running the template.
func DecodeStored(b []byte) (*ClusterSpec, error) {
	var st storedSpec
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("stored spec: %w", err)
	}
	spec, err := specFromJSON(st.Rendered, false)
	if err != nil {
		return nil, fmt.Errorf("stored spec: %w", err)
	}
	for i, services := range st.ParamPaths {
		if i < 0 || i >= len(spec.Nodes) {
			return nil, fmt.Errorf("stored spec: parameter paths of nodes[%d], which does not exist", i)
		}
		for name, paths := range services {
			svc, ok := spec.Nodes[i].Services[name]
			if !ok {
				return nil, fmt.Errorf("stored spec: parameter paths of nodes[%d].services.%s, which does not exist", i, name)
			}
			svc.ParamPaths = paths
			spec.Nodes[i].Services[name] = svc
		}
	}
	spec.rendered = st.Rendered
	return spec, nil
}
