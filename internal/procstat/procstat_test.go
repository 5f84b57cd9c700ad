package procstat

import (
	"os"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		state byte
		start uint64
		bad   bool
	}{
		{name: "plain", in: "42 (sleep) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 123456 5 6", state: 'S', start: 123456},
		{name: "name with spaces and parens", in: "7 (a) b (c) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0", state: 'Z', start: 99},
		{name: "truncated", in: "7 (x) S 1 2", bad: true},
		{name: "no parens", in: "garbage", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state, start, err := parse([]byte(tt.in))
			if tt.bad {
				if err == nil {
					t.Errorf("parse(%q) succeeded", tt.in)
				}
				return
			}
			if err != nil || state != tt.state || start != tt.start {
				t.Errorf("parseStat = %c, %d, %v; want %c, %d", state, start, err, tt.state, tt.start)
			}
		})
	}
}

func TestAliveTellsReusedPids(t *testing.T) {
	_, start, err := Stat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !Alive(os.Getpid(), start) {
		t.Error("this process is not alive by its own start time")
	}
	if Alive(os.Getpid(), start+1) {
		t.Error("a process with another start time counts as this one")
	}
	if Alive(0, start) {
		t.Error("pid 0 counts as alive")
	}
}
