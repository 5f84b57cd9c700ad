package events

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/types/known/timestamppb"

	pilotv1 "github.com/hangarhq/hangar/api/pilotv1"
	"github.com/hangarhq/hangar/internal/etcdserver/etcdtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func messages(evs []*pilotv1.ClusterEvent) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Message
	}
	return out
}

// TestListInOrder: a cluster's events come in time order, the newest
// limit of them, or those after an id; another cluster's never.
func TestListInOrder(t *testing.T) {
	l := New(etcdtest.Client(t), nil)
	ctx := context.Background()
	base := time.Unix(1_700_000_000, 0)
	for i := range 5 {
		l.Append(ctx, &pilotv1.ClusterEvent{ClusterId: "cl-a", Kind: "health", Message: fmt.Sprint("a", i), Time: timestamppb.New(base.Add(time.Duration(i) * time.Second))})
	}
	l.Append(ctx, &pilotv1.ClusterEvent{ClusterId: "cl-ab", Kind: "health", Message: "other"})

	all, err := l.List(ctx, "cl-a", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(messages(all)); got != "[a0 a1 a2 a3 a4]" {
		t.Fatalf("all events of cl-a: %s", got)
	}
	newest, _ := l.List(ctx, "cl-a", "", 2)
	if got := fmt.Sprint(messages(newest)); got != "[a3 a4]" {
		t.Errorf("newest 2: %s, want [a3 a4]", got)
	}
	after, _ := l.List(ctx, "cl-a", all[1].Id, 2)
	if got := fmt.Sprint(messages(after)); got != "[a2 a3]" {
		t.Errorf("2 after a1: %s, want [a2 a3]", got)
	}
	if none, _ := l.List(ctx, "cl-a", all[4].Id, 0); len(none) != 0 {
		t.Errorf("after the last: %v, want none", messages(none))
	}
	if _, err := l.List(ctx, "cl-a", "", -1); err == nil {
		t.Error("a negative limit was accepted")
	}
	if err := l.Delete(ctx, "cl-a"); err != nil {
		t.Fatal(err)
	}
	if left, _ := l.List(ctx, "cl-a", "", 0); len(left) != 0 {
		t.Errorf("after Delete: %v", messages(left))
	}
	if other, _ := l.List(ctx, "cl-ab", "", 0); len(other) != 1 {
		t.Errorf("Delete of cl-a took cl-ab's events: %v", messages(other))
	}
}

// TestKeepsTheNewest: past the cap, the oldest events go.
func TestKeepsTheNewest(t *testing.T) {
	l := New(etcdtest.Client(t), nil)
	ctx := context.Background()
	base := time.Unix(1_700_000_000, 0)
	for i := range 12 {
		l.Append(ctx, &pilotv1.ClusterEvent{ClusterId: "cl-a", Message: fmt.Sprint(i), Time: timestamppb.New(base.Add(time.Duration(i) * time.Second))})
	}
	if err := l.prune(ctx, "cl-a", 5); err != nil {
		t.Fatal(err)
	}
	left, err := l.List(ctx, "cl-a", "", MaxLimit)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(messages(left)); got != "[7 8 9 10 11]" {
		t.Errorf("kept %s, want the newest five", got)
	}
}

// TestMessageKeptValid: a message that is not valid UTF-8, or too long,
// is stored (cut at a character), not lost to a failed encode.
func TestMessageKeptValid(t *testing.T) {
	l := New(etcdtest.Client(t), nil)
	ctx := context.Background()
	l.Append(ctx, &pilotv1.ClusterEvent{ClusterId: "cl-a", Message: "check said \xff\xfe " + strings.Repeat("é", maxMessage)})
	evs, err := l.List(ctx, "cl-a", "", 0)
	if err != nil || len(evs) != 1 {
		t.Fatalf("events %v, %v; want the one appended", evs, err)
	}
	if m := evs[0].Message; !utf8.ValidString(m) || len(m) > maxMessage || !strings.HasPrefix(m, "check said \uFFFD") {
		t.Errorf("stored message: %d bytes, valid %v, %q…", len(m), utf8.ValidString(m), m[:min(len(m), 20)])
	}
}
