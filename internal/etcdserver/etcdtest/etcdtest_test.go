package etcdtest

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestEachTestGetsItsOwnEmptyMember(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, b := Client(t), Client(t)
	if _, err := a.Put(ctx, "/k", "a"); err != nil {
		t.Fatal(err)
	}
	resp, err := b.Get(ctx, "/k")
	if err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("second member sees %v (%v); want it empty", resp, err)
	}
}
