package sdk

import (
	"os"
	"testing"
	"time"
)

func TestExitWithParent(t *testing.T) {
	t.Run("parent gone: exits", func(t *testing.T) {
		exited := make(chan struct{})
		done := make(chan struct{})
		defer close(done)
		// A parent pid that is not ours stands for "re-parented".
		go exitWithParent(os.Getppid()+1, 5*time.Millisecond, done, os.Getppid, func() { close(exited) })
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			t.Fatal("plugin did not exit after its parent changed")
		}
	})
	t.Run("parent alive: stays until done", func(t *testing.T) {
		done := make(chan struct{})
		stopped := make(chan struct{})
		checks := make(chan struct{})
		getppid := func() int {
			select {
			case checks <- struct{}{}:
			case <-done:
			}
			return os.Getppid()
		}
		go func() {
			exitWithParent(os.Getppid(), time.Millisecond, done, getppid, func() { t.Error("exited while the parent lives") })
			close(stopped)
		}()
		// Let the watcher check several times, each time finding the parent.
		for i := 0; i < 3; i++ {
			select {
			case <-checks:
			case <-time.After(5 * time.Second):
				t.Fatalf("the watcher made %d checks, want 3", i)
			}
		}
		close(done)
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			t.Fatal("watcher did not stop when done closed")
		}
	})
}
