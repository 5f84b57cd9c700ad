package apppkg

import (
	"encoding/json"
	"fmt"
	"strings"
)

// maxTabLabels is AppCenter's limit on a display tab's columns.
const maxTabLabels = 5

// Tab is what a display tab's command prints.
type Tab struct {
	Labels []string `json:"labels"`
	Data   [][]any  `json:"data"`
}

// ParseTab reads a display tab command's output: one JSON object with up
// to 5 labels and rows of as many cells.
func ParseTab(out string) (*Tab, error) {
	var tab Tab
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&tab); err != nil {
		return nil, fmt.Errorf(`want one JSON object {"labels": [...], "data": [[...], ...]}: %v`, err)
	}
	if len(tab.Labels) == 0 || len(tab.Labels) > maxTabLabels {
		return nil, fmt.Errorf("%d labels; a tab has 1 to %d", len(tab.Labels), maxTabLabels)
	}
	for i, row := range tab.Data {
		if len(row) != len(tab.Labels) {
			return nil, fmt.Errorf("data[%d] has %d cells for %d labels", i, len(row), len(tab.Labels))
		}
	}
	return &tab, nil
}
