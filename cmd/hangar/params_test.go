package main

import (
	"maps"
	"strings"
	"testing"
)

func TestParseKeyValues(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    map[string]string
		wantErr []string // substrings of the error
	}{
		{name: "none", args: nil, want: map[string]string{}},
		{
			name: "values keep commas and equals signs",
			args: []string{"cluster.name=cache", "env.4lw.commands.whitelist=srvr,ruok", "env.opts=a=b", "env.empty="},
			want: map[string]string{"cluster.name": "cache", "env.4lw.commands.whitelist": "srvr,ruok", "env.opts": "a=b", "env.empty": ""},
		},
		{name: "no equals sign", args: []string{"a=1", "env.port"}, wantErr: []string{`--param "env.port"`, "KEY=VALUE", "--param env.port=6379"}},
		{name: "empty key", args: []string{"=5"}, wantErr: []string{`--param "=5"`, "key", "empty"}},
		{name: "key with a space", args: []string{"env. port=1"}, wantErr: []string{`--param "env. port=1"`, "whitespace"}},
		{name: "repeated key", args: []string{"a=1", "a=2"}, wantErr: []string{`--param "a=2"`, `"a"`, "more than once"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseKeyValues("--param", "--param env.port=6379", tt.args)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("got %v, want an error", got)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDialableAddr(t *testing.T) {
	tests := []struct {
		listen, want, wantErr string
	}{
		{listen: "127.0.0.1:7400", want: "127.0.0.1:7400"},
		{listen: ":7400", want: "127.0.0.1:7400"},
		{listen: "0.0.0.0:7400", want: "127.0.0.1:7400"},
		{listen: "[::]:7400", want: "[::1]:7400"},
		{listen: "pilot.example:7400", want: "pilot.example:7400"},
		{listen: "127.0.0.1", wantErr: "HOST:PORT"},
		{listen: "127.0.0.1:0", wantErr: "fixed port"},
		{listen: "127.0.0.1:99999", wantErr: "1 to 65535"},
	}
	for _, tt := range tests {
		got, err := dialableAddr("--listen", tt.listen)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "--listen") {
				t.Errorf("%q: err = %v, want one naming --listen and %q", tt.listen, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q: got %q, %v; want %q", tt.listen, got, err, tt.want)
		}
	}
}
