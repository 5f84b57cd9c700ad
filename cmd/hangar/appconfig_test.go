package main

import (
	"slices"
	"testing"
)

// A config.json in AppCenter's shape, with the loose typing real packages use.
const sampleConfig = `{
  "type": "array",
  "properties": [{
    "key": "cluster", "type": "array", "description": "cluster",
    "properties": [
      {"key": "name", "label": "Name", "type": "string", "default": "KV", "required": "no"},
      {"key": "description", "label": "Description", "type": "string", "default": "", "required": "no"},
      {"key": "primary", "label": "Primary", "type": "array", "properties": [
        {"key": "cpu", "label": "CPU", "type": "integer", "default": 1, "range": [1, 2, 4], "required": "yes"},
        {"key": "count", "label": "Count", "type": "integer", "default": 1, "min": 1, "max": 9, "step": 2, "required": true}
      ]}
    ]
  }, {
    "key": "env", "type": "array",
    "properties": [
      {"key": "port", "label": "Port", "type": "integer", "default": 6379, "min": 1024, "required": "yes"},
      {"key": "4lw.commands.whitelist", "label": "4lw", "type": "string", "default": "srvr", "range": ["srvr", "ruok", "stat"], "multichoice": true, "separator": ","},
      {"key": "requirepass", "label": "Password", "type": "password", "default": "s3cret"},
      {"key": "name-pattern", "type": "string", "pattern": "^[a-z]+$"},
      {"key": "replica", "type": "array", "properties": [
        {"key": "maxmemory", "type": "integer", "default": 256, "range": 256}
      ]}
    ]
  }]
}`

func TestParseConfigParams(t *testing.T) {
	got, err := parseConfigParams(sampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	want := []configParam{
		{Key: "cluster.name", Type: "string", Label: "Name", Default: "KV"},
		{Key: "cluster.description", Type: "string", Label: "Description", Default: `""`},
		{Key: "cluster.primary.cpu", Type: "integer", Label: "CPU", Default: "1", Range: "1, 2, 4", Required: true},
		{Key: "cluster.primary.count", Type: "integer", Label: "Count", Default: "1", Range: "1..9; step 2", Required: true},
		{Key: "env.port", Type: "integer", Label: "Port", Default: "6379", Range: "1024..", Required: true},
		{Key: "env.4lw.commands.whitelist", Type: "string", Label: "4lw", Default: "srvr", Range: `any of srvr, ruok, stat (joined by ",")`},
		{Key: "env.requirepass", Type: "password", Label: "Password", Default: "(hidden)"},
		{Key: "env.name-pattern", Type: "string", Range: "matching ^[a-z]+$"},
		{Key: "env.replica.maxmemory", Type: "integer", Default: "256", Range: "256"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got\n%+v\nwant\n%+v", got, want)
	}
}

func TestParseConfigParamsBadInput(t *testing.T) {
	if got, err := parseConfigParams(""); err != nil || got != nil {
		t.Errorf("empty: %v, %v; want nothing", got, err)
	}
	if _, err := parseConfigParams("{not json"); err == nil {
		t.Error("want an error for invalid JSON")
	}
}
