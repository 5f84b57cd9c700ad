package executor

import (
	"strings"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/drone/executor/supervise"
)

// record is the on-disk state of one command: <data>/commands/<id>.json.
// It is the supervisor's format, which a supervisor process writes too.
type record = supervise.Record

const statePrefix = "COMMAND_STATE_"

// stateName is the record's spelling of a state: "RUNNING", "EXITED", …
func stateName(s streamv1.CommandState) string {
	return strings.TrimPrefix(s.String(), statePrefix)
}

func parseState(name string) streamv1.CommandState {
	return streamv1.CommandState(streamv1.CommandState_value[statePrefix+name])
}
