package supervise

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Record is the on-disk state of one command: <data>/commands/<id>.json.
type Record struct {
	CommandID       string    `json:"command_id"`
	Cmd             string    `json:"cmd"`
	User            string    `json:"user,omitempty"`
	TimeoutSeconds  int32     `json:"timeout_seconds"`
	State           string    `json:"state"`
	ExitCode        int32     `json:"exit_code"`
	Output          []byte    `json:"output,omitempty"`
	OutputTruncated bool      `json:"output_truncated,omitempty"`
	StartedAt       time.Time `json:"started_at"`
	FinishedAt      time.Time `json:"finished_at,omitzero"`
	Error           string    `json:"error,omitempty"`
	// SupervisorPID and SupervisorStart (its start time, clock ticks
	// after boot) name the supervisor running the command, if any.
	SupervisorPID   int    `json:"supervisor_pid,omitempty"`
	SupervisorStart uint64 `json:"supervisor_start,omitempty"`
}

// The states a record holds: the names of streamv1.CommandState without
// their COMMAND_STATE_ prefix (the executor's tests check they agree).
const (
	StateRunning       = "RUNNING"
	StateExited        = "EXITED"
	StateFailedToStart = "FAILED_TO_START"
	StateTimedOut      = "TIMED_OUT"
	StateCancelled     = "CANCELLED"
	StateLost          = "LOST"
)

func ReadRecord(path string) (Record, error) {
	var r Record
	b, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("parse %s: %w", path, err)
	}
	return r, nil
}

// WriteRecord replaces dir/<id>.json atomically and durably: a crash leaves
// either the old record or the new one, never a torn file.
func WriteRecord(dir, id string, r Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode record %s: %w", id, err)
	}
	f, err := os.CreateTemp(dir, id+".json.tmp-*")
	if err != nil {
		return fmt.Errorf("create record %s: %w", id, err)
	}
	tmp := f.Name()
	_, werr := f.Write(b)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, filepath.Join(dir, id+".json"))
	}
	if werr != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write record %s: %w", id, werr)
	}
	// The rename is durable only once the directory itself is synced.
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
