package apppkg

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// jsonError names the file and, where the decoder knows it, the line and
// column of a JSON error, so an author can find it in an editor.
func jsonError(name string, data []byte, err error) error {
	if name != "" {
		return prefixed(name, jsonError("", data, err))
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line, col := lineCol(data, se.Offset)
		return fmt.Errorf("invalid JSON at line %d, column %d: %w", line, col, err)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		line, col := lineCol(data, te.Offset)
		field := te.Field
		if field == "" {
			field = "value"
		}
		return fmt.Errorf("line %d, column %d: %s: want %s, got JSON %s", line, col, field, te.Type, te.Value)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return errors.New("invalid JSON: unexpected end of file")
	}
	return err
}

// prefixed names the file an error is about, keeping the chain.
type prefixedError struct {
	name string
	err  error
}

func (e *prefixedError) Error() string { return e.name + ": " + e.err.Error() }
func (e *prefixedError) Unwrap() error { return e.err }

func prefixed(name string, err error) error { return &prefixedError{name: name, err: err} }

// lineCol converts a byte offset into a 1-based line and column.
func lineCol(data []byte, off int64) (line, col int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	if off < 0 {
		off = 0
	}
	before := data[:off]
	line = bytes.Count(before, []byte{'\n'}) + 1
	col = int(off) - (bytes.LastIndexByte(before, '\n') + 1)
	if col < 1 {
		col = 1
	}
	return line, col
}

// trailingData fails when anything but white space follows the first JSON
// value: a file holding two objects is a mistake, not an object.
func trailingData(dec *json.Decoder) error {
	var extra json.RawMessage
	err := dec.Decode(&extra)
	if errors.Is(err, io.EOF) {
		return nil
	}
	if err != nil {
		return err
	}
	return errors.New("unexpected data after the top-level JSON value")
}

// decodeJSON decodes data into a generic value, numbers as json.Number so
// integers above 2^53 keep their digits.
func decodeJSON(name string, data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, jsonError(name, data, err)
	}
	if err := trailingData(dec); err != nil {
		return nil, jsonError(name, data, err)
	}
	return v, nil
}

// jsonKind names the JSON type of a generic value for error messages.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number, float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// jsonLines maps the path of every value in data ("properties[0].key",
// "properties[1].properties[2]") to the line it starts on, so errors found
// after decoding can still name a line. It gives up quietly on invalid
// JSON: decoding reports that.
func jsonLines(data []byte) map[string]int {
	out := map[string]int{}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	// start finds where the next token begins, past white space and the
	// separators the decoder skips without returning.
	start := func() int64 {
		off := dec.InputOffset()
		for off < int64(len(data)) && bytes.IndexByte([]byte(" \t\r\n,:"), data[off]) >= 0 {
			off++
		}
		return off
	}
	var walk func(path string) bool
	walk = func(path string) bool {
		off := start()
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		out[path], _ = lineCol(data, off)
		d, ok := tok.(json.Delim)
		if !ok {
			return true
		}
		switch d {
		case '{':
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return false
				}
				key, _ := k.(string)
				child := key
				if path != "" {
					child = path + "." + key
				}
				if !walk(child) {
					return false
				}
			}
		case '[':
			for i := 0; dec.More(); i++ {
				if !walk(fmt.Sprintf("%s[%d]", path, i)) {
					return false
				}
			}
		}
		_, err = dec.Token() // the closing delimiter
		return err == nil
	}
	walk("")
	return out
}
