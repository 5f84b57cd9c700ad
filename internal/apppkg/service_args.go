package apppkg

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
)

// ServiceArgs checks the parameters a user gives to run service on role and
// returns the JSON object appended to the command as its one argument.
// Names are the keys of the service's service_params in cluster.json; each
// is checked against the config.json parameter it carries (found through
// the template, or else as service_params.<role>.<name> or
// service_params.<name>). Names not given take the rendered value. A
// service without service_params gets "{}" only when params is empty.
func (p *Package) ServiceArgs(spec *ClusterSpec, role, service string, params map[string]string) ([]byte, error) {
	n, ok := spec.Node(role)
	if !ok {
		return nil, fmt.Errorf("service %s: no role %q", service, role)
	}
	svc, ok := n.Service(service)
	if !ok {
		return nil, fmt.Errorf("service %s: role %q has no such service with a command", service, role)
	}
	args := make(map[string]any, len(svc.ServiceParams))
	var errs []error
	names := make([]string, 0, len(params))
	for k := range params {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		if _, declared := svc.ServiceParams[name]; !declared {
			errs = append(errs, fmt.Errorf("service %s: unknown parameter %q; allowed: %s", service, name, paramNames(svc.ServiceParams)))
		}
	}
	for name, rendered := range svc.ServiceParams {
		it := p.serviceParamItem(svc, role, name)
		s, given := params[name]
		switch {
		case given && it == nil:
			errs = append(errs, fmt.Errorf("service %s: parameter %q is fixed by cluster.json and cannot be given", service, name))
		case given:
			v, err := fromString(it, s)
			if err == nil && it.Required && isStringType(it.Type) && s == "" {
				err = errors.New("required; must not be empty")
			}
			if err == nil {
				err = checkValue(it, v)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("service %s: parameter %q (%s): %w", service, name, it.Path, err))
				continue
			}
			args[name] = v
		case it != nil && it.Required && !(it.HasDefault && it.Default != nil):
			errs = append(errs, fmt.Errorf("service %s: parameter %q (%s) is required", service, name, it.Path))
		default:
			args[name] = rendered
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(args); err != nil {
		return nil, fmt.Errorf("service %s: encode parameters: %w", service, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func (p *Package) serviceParamItem(svc Service, role, name string) *Item {
	if path, ok := svc.ParamPaths[name]; ok {
		if it, ok := p.Config.items[path]; ok {
			return it
		}
	}
	paths := []string{GroupServiceParams + "." + name}
	if role != "" {
		paths = append([]string{GroupServiceParams + "." + role + "." + name}, paths...)
	}
	for _, path := range paths {
		if it, ok := p.Config.items[path]; ok {
			return it
		}
	}
	return nil
}

func paramNames(m map[string]any) string {
	if len(m) == 0 {
		return "none"
	}
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	b, _ := json.Marshal(out)
	return string(b)
}
