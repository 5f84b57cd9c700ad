package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// outputFormat is the -o flag: text for people, json for scripts.
type outputFormat int

const (
	formatText outputFormat = iota
	formatJSON
)

func parseOutputFormat(s string) (outputFormat, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "text", "":
		return formatText, nil
	case "json":
		return formatJSON, nil
	}
	return formatText, fmt.Errorf("-o/--output %q: allowed values are text, json", s)
}

// marshalJSON matches the REST gateway's JSON (field names in lowerCamelCase,
// zero values present), so scripts see one shape whichever API they use.
func marshalJSON(m proto.Message) ([]byte, error) {
	raw, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %s as JSON: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return raw, nil
}

// writeJSON prints m as indented JSON. protojson's own spacing varies between
// builds on purpose, so the output is re-indented to stay stable for diffs.
func writeJSON(w io.Writer, m proto.Message) error {
	raw, err := marshalJSON(m)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return fmt.Errorf("indent JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, err = w.Write(buf.Bytes())
	return err
}

// writeJSONLine prints m as one line of JSON, for streams of objects.
func writeJSONLine(w io.Writer, m proto.Message) error {
	raw, err := marshalJSON(m)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return fmt.Errorf("compact JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, err = w.Write(buf.Bytes())
	return err
}

// newTable returns a writer that aligns tab-separated columns; call Flush.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
}

// row writes one table row; empty cells become "-" so columns stay aligned.
func row(w io.Writer, cells ...string) {
	for i, c := range cells {
		if c == "" {
			cells[i] = "-"
		}
		// A tab or newline inside a cell would break the table.
		cells[i] = strings.NewReplacer("\t", " ", "\n", " ").Replace(cells[i])
	}
	fmt.Fprintln(w, strings.Join(cells, "\t"))
}

func formatTime(ts *timestamppb.Timestamp) string {
	if ts == nil || (ts.GetSeconds() == 0 && ts.GetNanos() == 0) {
		return ""
	}
	return ts.AsTime().Local().Format("2006-01-02 15:04:05")
}

// formatDuration prints short durations with a tenth of a second ("2.1s")
// and longer ones rounded to the second ("3m12s").
func formatDuration(d time.Duration) string {
	if d < 0 {
		return ""
	}
	if d < time.Minute {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}

// between is the time from a to b, or false when either is unset.
func between(a, b *timestamppb.Timestamp) (time.Duration, bool) {
	if a == nil || b == nil || a.GetSeconds() == 0 || b.GetSeconds() == 0 {
		return 0, false
	}
	return b.AsTime().Sub(a.AsTime()), true
}

// enumName turns "CLUSTER_STATUS_ACTIVE" into "active".
func enumName(s, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(s, prefix))
}

// tailLines returns the last n lines of s, without a trailing empty line.
func tailLines(s string, n int) []string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return nil
	}
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

// writeJSONValue prints v, a plain Go value (not a proto message), as
// indented JSON, for commands whose answer does not come from pilot.
func writeJSONValue(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
