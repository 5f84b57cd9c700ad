package sortid

import (
	"testing"
	"time"
)

func TestIDsSortByTime(t *testing.T) {
	base := time.Unix(1_700_000_000, 0)
	cases := []struct{ earlier, later time.Time }{
		{base, base.Add(time.Nanosecond)},
		{base, base.Add(time.Hour)},
		{time.Unix(0, 1), base},
	}
	for _, c := range cases {
		a, b := New(c.earlier), New(c.later)
		if a >= b {
			t.Errorf("id of %v (%s) does not sort before the id of %v (%s)", c.earlier, a, c.later, b)
		}
		if cut := TimeKey(c.later); a >= cut || b < cut {
			t.Errorf("cutoff %s does not split %s and %s", cut, a, b)
		}
	}
	if a, b := New(base), New(base); a == b {
		t.Errorf("two ids of one nanosecond are equal: %s", a)
	}
}
