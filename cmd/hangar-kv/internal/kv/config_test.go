package kv

import (
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Config
		wantErr string // substring; empty = success
	}{
		{
			name: "primary with comments and blanks",
			in:   "# rendered by confd\n\nrole = primary\nlisten = 127.0.0.2:6380\nprimary = 127.0.0.2:6380\nmotd = hello = world\n",
			want: Config{Role: "primary", Listen: "127.0.0.2:6380", Primary: "127.0.0.2:6380", MOTD: "hello = world"},
		},
		{
			name: "replica, empty motd",
			in:   "role=replica\nlisten=127.0.0.3:6380\nprimary=127.0.0.2:6380\nmotd =\n",
			want: Config{Role: "replica", Listen: "127.0.0.3:6380", Primary: "127.0.0.2:6380"},
		},
		{name: "missing role", in: "listen = 127.0.0.1:1\n", wantErr: "role is required"},
		{name: "bad role", in: "role = master\nlisten = 127.0.0.1:1\n", wantErr: `role "master" is not allowed (allowed: primary, replica)`},
		{name: "missing listen", in: "role = primary\n", wantErr: "listen is required"},
		{name: "listen without port", in: "role = primary\nlisten = 127.0.0.1\n", wantErr: `listen "127.0.0.1"`},
		{name: "listen port out of range", in: "role = primary\nlisten = 127.0.0.1:70000\n", wantErr: "not a number in 0..65535"},
		{name: "replica without primary", in: "role = replica\nlisten = 127.0.0.1:1\n", wantErr: "primary is required for a replica"},
		{name: "primary port 0", in: "role = replica\nlisten = 127.0.0.1:1\nprimary = 127.0.0.2:0\n", wantErr: "port 0 is only allowed for listen"},
		{name: "unknown key", in: "role = primary\nlisten = 127.0.0.1:1\nport = 6380\n", wantErr: `line 3: unknown key "port" (allowed: role, listen, primary, motd)`},
		{name: "duplicate key", in: "role = primary\nrole = replica\n", wantErr: `line 2: key "role" already set on line 1`},
		{name: "not key value", in: "role primary\n", wantErr: "line 1: want `key = value`"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseConfig(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
