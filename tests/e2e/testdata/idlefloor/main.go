// Command idlefloor is the floor BenchmarkDroneIdle measures the drone
// against: a Go program, built as the drone is, that does nothing but wait
// for a signal, as an idle drone waits for its frontgate's requests.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
