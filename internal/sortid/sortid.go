// Package sortid makes the ids of records that list in time order under
// an etcd prefix (audit entries, cluster events): the time in fixed-width
// hex, so that key order is time order and a time cutoff is a key, then
// random bytes, so that two ids of one nanosecond (or from two pilots)
// never clash.
package sortid

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"
)

// New is an id for a record made at t.
func New(t time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return TimeKey(t) + "-" + hex.EncodeToString(b[:])
}

// TimeKey is the time part of an id: every id made before t sorts before
// it.
func TimeKey(t time.Time) string {
	return fmt.Sprintf("%016x", t.UnixNano())
}
