package metrics

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	streamv1 "github.com/hangarhq/hangar/api/streamv1"
)

// MonitorTimeout is how long the monitor command may run (APPCENTER-FORMAT
// 1.5: it must finish in 5 s); never longer than the interval.
const MonitorTimeout = 5 * time.Second

// Spec is a role's monitor as pilot sent it.
type Spec struct {
	Cmd      string
	Interval time.Duration
	Items    []ItemSpec
}

// ItemSpec says how one printed value becomes the reported one.
type ItemSpec struct {
	Key string
	// ValueType is "int" (a number, or a string holding one) or "str".
	ValueType string
	// StatisticsType: "delta" and "rate" are computed here; "latest",
	// "min", "max", "avg", "mode" and "median" are reported as the latest
	// value, pilot computing the others over its window.
	StatisticsType string
	// Enums are a str item's possible values: its value is reported as
	// the index of its text among them.
	Enums []string
}

// SpecOf checks the monitor pilot sent (nil: none).
func SpecOf(m *streamv1.Monitor) (*Spec, error) {
	if m == nil {
		return nil, nil
	}
	s := &Spec{Cmd: m.GetCmd(), Interval: time.Duration(m.GetIntervalSec()) * time.Second}
	if strings.TrimSpace(s.Cmd) == "" {
		return nil, errors.New("monitor: cmd is required")
	}
	if s.Interval < time.Second {
		return nil, fmt.Errorf("monitor: interval_sec %d: at least 1", m.GetIntervalSec())
	}
	for i, it := range m.GetItems() {
		is := ItemSpec{Key: it.GetKey(), ValueType: it.GetValueType(), StatisticsType: it.GetStatisticsType(), Enums: slices.Clone(it.GetEnums())}
		if is.ValueType == "" {
			is.ValueType = "int"
		}
		if is.StatisticsType == "" {
			is.StatisticsType = "latest"
		}
		switch {
		case is.Key == "":
			return nil, fmt.Errorf("monitor: items[%d]: no key", i)
		case is.ValueType != "int" && is.ValueType != "str":
			return nil, fmt.Errorf("monitor: item %s: value_type %q: want int or str", is.Key, is.ValueType)
		}
		switch is.StatisticsType {
		case "latest", "min", "max", "avg", "mode", "median", "delta", "rate":
		default:
			return nil, fmt.Errorf("monitor: item %s: statistics_type %q: want latest, min, max, avg, mode, median, delta or rate", is.Key, is.StatisticsType)
		}
		s.Items = append(s.Items, is)
	}
	return s, nil
}

func (s *Spec) equal(o *Spec) bool {
	if s == nil || o == nil {
		return s == o
	}
	return s.Cmd == o.Cmd && s.Interval == o.Interval && slices.EqualFunc(s.Items, o.Items, func(a, b ItemSpec) bool {
		return a.Key == b.Key && a.ValueType == b.ValueType && a.StatisticsType == b.StatisticsType && slices.Equal(a.Enums, b.Enums)
	})
}

// parseOutput finds the JSON object the monitor command printed: its
// whole output, or else its last line that is one (the output holds
// stderr too, where a command may warn).
func parseOutput(out []byte) (map[string]json.RawMessage, error) {
	var obj map[string]json.RawMessage
	trimmed := bytes.TrimSpace(out)
	if err := json.Unmarshal(trimmed, &obj); err == nil && obj != nil {
		return obj, nil
	}
	lines := bytes.Split(trimmed, []byte("\n"))
	for i := len(lines) - 1; i >= 0; i-- {
		l := bytes.TrimSpace(lines[i])
		if len(l) > 0 && l[0] == '{' && json.Unmarshal(l, &obj) == nil && obj != nil {
			return obj, nil
		}
	}
	first, _, _ := bytes.Cut(trimmed, []byte("\n"))
	if len(first) > 80 {
		first = first[:80]
	}
	return nil, fmt.Errorf("output is not a JSON object {item: value}: %q", first)
}

// numberOf reads a number, or a string holding one (ZooKeeper's monitor
// prints numeric strings); true and false are 1 and 0.
func numberOf(raw json.RawMessage) (float64, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return 0, err
	}
	switch x := v.(type) {
	case float64:
		return x, nil
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return 0, fmt.Errorf("%q is not a number", x)
		}
		return f, nil
	case bool:
		if x {
			return 1, nil
		}
		return 0, nil
	}
	return 0, fmt.Errorf("%s is not a number", raw)
}

// textOf reads a str item's value: a string, or anything else as printed.
func textOf(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		s = string(raw)
	}
	return cutText(s, MaxTextBytes)
}

// MaxTextBytes bounds a str item's text (the frontgate refuses longer:
// it keeps every node's last report).
const MaxTextBytes = 256

// cutText is s in at most n bytes of valid UTF-8, cut at a character.
func cutText(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// sample is an item's raw value at a time, kept for delta and rate.
type sample struct {
	value float64
	at    time.Time
}

// itemState turns raw values into reported ones; it is reset with the spec.
type itemState struct {
	prev map[string]sample
}

// values applies each item's statistics_type to what the command printed
// at at. An item missing from the output, or printed badly, is left out
// (named in the error); a delta or rate item has its first value only at
// its second sample.
func (st *itemState) values(spec *Spec, obj map[string]json.RawMessage, at time.Time) ([]*streamv1.MonitorValue, error) {
	if st.prev == nil {
		st.prev = map[string]sample{}
	}
	var out []*streamv1.MonitorValue
	var bad []string
	for _, it := range spec.Items {
		raw, ok := obj[it.Key]
		if !ok || string(raw) == "null" {
			bad = append(bad, it.Key+": not printed")
			continue
		}
		if it.ValueType == "str" {
			text := textOf(raw)
			v := &streamv1.MonitorValue{Key: it.Key, Text: text}
			if i := slices.Index(it.Enums, text); i >= 0 {
				v.Value = float64(i)
			}
			out = append(out, v)
			continue
		}
		cur, err := numberOf(raw)
		if err != nil {
			bad = append(bad, it.Key+": "+err.Error())
			continue
		}
		v, ok := st.apply(it, cur, at)
		if ok {
			out = append(out, &streamv1.MonitorValue{Key: it.Key, Value: v})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	if len(bad) > 0 {
		return out, errors.New(strings.Join(bad, "; "))
	}
	return out, nil
}

// apply is an int item's reported value: delta is the difference from the
// previous value (a counter that went backwards restarted: its value
// then), rate that difference per second; the rest report the value.
func (st *itemState) apply(it ItemSpec, cur float64, at time.Time) (float64, bool) {
	switch it.StatisticsType {
	case "delta", "rate":
	default:
		return cur, true
	}
	prev, had := st.prev[it.Key]
	st.prev[it.Key] = sample{value: cur, at: at}
	if !had {
		return 0, false
	}
	d := cur - prev.value
	if d < 0 {
		d = max(cur, 0)
	}
	if it.StatisticsType == "delta" {
		return d, true
	}
	secs := at.Sub(prev.at).Seconds()
	if secs <= 0 {
		return 0, false
	}
	return d / secs, true
}
