package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// configParam is one settable item of an app's config.json, keyed by the
// path that `cluster create --param` takes ("env.port", "cluster.replica.count").
type configParam struct {
	Key      string
	Type     string
	Label    string
	Default  string // "" when the item has no default
	Range    string // allowed values, bounds, pattern or choices; "" when free
	Required bool
}

// configItem is the part of a config.json item the CLI shows. Loosely typed
// fields are raw so that a package writing "true" for true, or one value for
// a list, still shows instead of failing the whole table.
type configItem struct {
	Key         string          `json:"key"`
	Label       string          `json:"label"`
	Type        string          `json:"type"`
	Default     json.RawMessage `json:"default"`
	Required    json.RawMessage `json:"required"`
	Range       json.RawMessage `json:"range"`
	Min         json.RawMessage `json:"min"`
	Max         json.RawMessage `json:"max"`
	Step        json.RawMessage `json:"step"`
	Pattern     string          `json:"pattern"`
	Multichoice json.RawMessage `json:"multichoice"`
	Separator   string          `json:"separator"`
	Properties  []configItem    `json:"properties"`
}

// parseConfigParams lists the parameters of a config.json in the author's
// order. Items with "properties" are groups (cluster, env, service_params and
// their per-role arrays) whose key becomes a path segment.
func parseConfigParams(configJSON string) ([]configParam, error) {
	if strings.TrimSpace(configJSON) == "" {
		return nil, nil
	}
	var root configItem
	if err := json.Unmarshal([]byte(configJSON), &root); err != nil {
		return nil, fmt.Errorf("config.json: %w", err)
	}
	var out []configParam
	var walk func(prefix string, items []configItem)
	walk = func(prefix string, items []configItem) {
		for _, it := range items {
			key := it.Key
			if prefix != "" {
				key = prefix + "." + it.Key
			}
			if len(it.Properties) > 0 {
				walk(key, it.Properties)
				continue
			}
			out = append(out, configParam{
				Key:      key,
				Type:     it.Type,
				Label:    it.Label,
				Default:  defaultText(it),
				Range:    rangeText(it),
				Required: requiredValue(it.Required),
			})
		}
	}
	walk("", root.Properties)
	return out, nil
}

// defaultText shows a default as the user would type it: strings unquoted,
// and a password default hidden, as pilot hides password values.
func defaultText(it configItem) string {
	if len(it.Default) == 0 || string(it.Default) == "null" {
		return ""
	}
	if it.Type == "password" {
		return "(hidden)"
	}
	s := jsonText(it.Default)
	if s == "" {
		return `""`
	}
	return s
}

func rangeText(it configItem) string {
	var parts []string
	var choices []json.RawMessage
	if err := json.Unmarshal(it.Range, &choices); err != nil && jsonText(it.Range) != "" {
		choices = []json.RawMessage{it.Range}
	}
	if len(choices) > 0 {
		vals := make([]string, len(choices))
		for i, v := range choices {
			vals[i] = jsonText(v)
		}
		sep := ", "
		if jsonText(it.Multichoice) == "true" {
			s := it.Separator
			if s == "" {
				s = ","
			}
			parts = append(parts, fmt.Sprintf("any of %s (joined by %q)", strings.Join(vals, sep), s))
		} else {
			parts = append(parts, strings.Join(vals, sep))
		}
	}
	lo, hi := jsonText(it.Min), jsonText(it.Max)
	if lo != "" || hi != "" {
		parts = append(parts, lo+".."+hi)
	}
	if st := jsonText(it.Step); st != "" {
		parts = append(parts, "step "+st)
	}
	if it.Pattern != "" {
		parts = append(parts, "matching "+it.Pattern)
	}
	return strings.Join(parts, "; ")
}

// requiredValue accepts AppCenter's "yes"/"no" and OpenPitrix's booleans.
func requiredValue(raw json.RawMessage) bool {
	switch strings.ToLower(jsonText(raw)) {
	case "yes", "true":
		return true
	}
	return false
}

// jsonText renders a JSON value as plain text: strings without quotes,
// anything else compact.
func jsonText(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return string(raw)
	}
	return buf.String()
}
