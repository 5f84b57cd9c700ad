package kv

import (
	"sort"
	"sync"
)

// Entry is one key with the store version that last wrote it.
type Entry struct {
	Key     string `json:"key"`
	Value   string `json:"value"`
	Version uint64 `json:"version"`
}

// Dump is the answer of GET /dump: the entries written after a version.
// Epoch changes whenever the primary restarts (its store is in memory), so a
// replica knows its version counter no longer matches and resyncs in full.
type Dump struct {
	Epoch   string  `json:"epoch"`
	Version uint64  `json:"version"`
	Entries []Entry `json:"entries"`
}

// store is the in-memory map of one server; the version counts writes.
type store struct {
	mu      sync.RWMutex
	data    map[string]Entry
	version uint64
}

func newStore() *store {
	return &store{data: make(map[string]Entry)}
}

// put stores value under key and returns the new version.
func (s *store) put(key, value string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.version++
	s.data[key] = Entry{Key: key, Value: value, Version: s.version}
	return s.version
}

func (s *store) get(key string) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.data[key]
	return e.Value, ok
}

// stats returns the number of keys and the current version.
func (s *store) stats() (keys int, version uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.data), s.version
}

// since returns the entries written after version n, oldest first.
func (s *store) since(n uint64) (uint64, []Entry) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Entry, 0)
	for _, e := range s.data {
		if e.Version > n {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return s.version, out
}

// apply merges entries pulled from the primary; full replaces the whole
// store, for a first sync or after the primary changed.
func (s *store) apply(version uint64, entries []Entry, full bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if full {
		s.data = make(map[string]Entry, len(entries))
	}
	for _, e := range entries {
		s.data[e.Key] = e
	}
	s.version = version
}
