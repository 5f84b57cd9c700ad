// Package events keeps each cluster's events: what happened to it that an
// operator wants to read in order — a node's health changed, a node was
// lost or came back — stored in pilot's etcd at
// /hangar/events/<cluster>/<id>, where ids sort by time, so a cluster's
// events are one ranged read and a follower reads on from the last id it
// saw. Each cluster keeps its newest MaxPerCluster events.
package events

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"unicode/utf8"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/sortid"
)

// Prefix holds every cluster's events.
const Prefix = "/hangar/events/"

// Limits.
const (
	// MaxPerCluster is how many events a cluster keeps: its newest.
	MaxPerCluster = 1000
	DefaultLimit  = 100
	MaxLimit      = 1000
	// pruneEvery is how many appends to a cluster pass between prunes
	// of it: the cap is overshot by at most this many.
	pruneEvery = 50
	maxMessage = 1024
)

// Log is the clusters' event log.
type Log struct {
	c   *clientv3.Client
	log *slog.Logger

	mu      sync.Mutex
	appends map[string]int // per cluster, since the last prune
}

// New returns the log over c (pilot's etcd; the caller keeps it).
func New(c *clientv3.Client, log *slog.Logger) *Log {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Log{c: c, log: log, appends: map[string]int{}}
}

// ClusterPrefix holds one cluster's events.
func ClusterPrefix(clusterID string) string { return Prefix + clusterID + "/" }

var marshal = protojson.MarshalOptions{UseProtoNames: true}

// Append stores ev under its cluster, filling its id and, when unset, its
// time. A failure is logged, not returned: the event is about something
// that has happened already, and its caller has no better way to say it.
func (l *Log) Append(ctx context.Context, ev *pilotv1.ClusterEvent) {
	if ev.Time == nil {
		ev.Time = timestamppb.Now()
	}
	// Valid UTF-8 (a check's output may be anything), cut at a character.
	ev.Message = strings.ToValidUTF8(ev.Message, "\uFFFD")
	for len(ev.Message) > maxMessage {
		_, size := utf8.DecodeLastRuneInString(ev.Message)
		ev.Message = ev.Message[:len(ev.Message)-size]
	}
	ev.Id = sortid.New(ev.Time.AsTime())
	b, err := marshal.Marshal(ev)
	if err == nil {
		_, err = l.c.Put(ctx, ClusterPrefix(ev.ClusterId)+ev.Id, string(b))
	}
	if err != nil {
		l.log.Warn("cluster event not stored", "cluster_id", ev.ClusterId, "kind", ev.Kind, "message", ev.Message, "err", err)
		return
	}
	l.mu.Lock()
	l.appends[ev.ClusterId]++
	prune := l.appends[ev.ClusterId] >= pruneEvery
	if prune {
		delete(l.appends, ev.ClusterId)
	}
	l.mu.Unlock()
	if prune {
		if err := l.prune(ctx, ev.ClusterId, MaxPerCluster); err != nil {
			l.log.Warn("prune cluster events", "cluster_id", ev.ClusterId, "err", err)
		}
	}
}

// prune deletes all but the cluster's newest keep events.
func (l *Log) prune(ctx context.Context, clusterID string, keep int) error {
	p := ClusterPrefix(clusterID)
	resp, err := l.c.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(int64(keep+1)))
	if err != nil {
		return err
	}
	if len(resp.Kvs) <= keep {
		return nil
	}
	// Everything from the prefix up to the oldest kept event, excluded.
	_, err = l.c.Delete(ctx, p, clientv3.WithRange(string(resp.Kvs[keep-1].Key)))
	return err
}

// List returns a cluster's events in time order: those after the event id
// after, the first limit of them; without after, the newest limit. limit 0
// is DefaultLimit; above MaxLimit is MaxLimit.
func (l *Log) List(ctx context.Context, clusterID, after string, limit int) ([]*pilotv1.ClusterEvent, error) {
	if limit < 0 {
		return nil, fmt.Errorf("limit %d: must be 0 (default %d) or positive", limit, DefaultLimit)
	}
	if limit == 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	p := ClusterPrefix(clusterID)
	end := clientv3.GetPrefixRangeEnd(p)
	var resp *clientv3.GetResponse
	var err error
	if after == "" {
		resp, err = l.c.Get(ctx, p, clientv3.WithRange(end), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(int64(limit)))
	} else {
		resp, err = l.c.Get(ctx, p+after+"\x00", clientv3.WithRange(end), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend), clientv3.WithLimit(int64(limit)))
	}
	if err != nil {
		return nil, fmt.Errorf("read the events of cluster %s: %w", clusterID, err)
	}
	out := make([]*pilotv1.ClusterEvent, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		ev := &pilotv1.ClusterEvent{}
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(kv.Value, ev); err != nil {
			return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		out = append(out, ev)
	}
	if after == "" {
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	return out, nil
}

// Delete removes a cluster's events (its record is gone).
func (l *Log) Delete(ctx context.Context, clusterID string) error {
	_, err := l.c.Delete(ctx, ClusterPrefix(clusterID), clientv3.WithPrefix())
	return err
}
