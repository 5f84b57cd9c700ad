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
		go exitWithParent(os.Getppid()+1, 5*time.Millisecond, done, func() { close(exited) })
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			t.Fatal("plugin did not exit after its parent changed")
		}
	})
	t.Run("parent alive: stays until done", func(t *testing.T) {
		done := make(chan struct{})
		stopped := make(chan struct{})
		go func() {
			exitWithParent(os.Getppid(), 5*time.Millisecond, done, func() { t.Error("exited while the parent lives") })
			close(stopped)
		}()
		time.Sleep(50 * time.Millisecond) // several checks happen meanwhile
		close(done)
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			t.Fatal("watcher did not stop when done closed")
		}
	})
}
