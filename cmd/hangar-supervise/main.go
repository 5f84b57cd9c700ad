// Command hangar-supervise supervises one command of a drone: the drone
// starts it per command, in a session of its own, with the commands
// directory and the command's id; it runs the command, enforces its
// timeout and records its result, so the result survives the drone being
// killed (drone/executor/supervise).
//
// It is the drone's own supervisor in a small binary: a drone finds it
// beside its own binary and uses it, else it starts itself with
// "__supervise". Not meant to be run by hand.
package main

import (
	"os"

	"github.com/hangarhq/hangar/drone/executor/supervise"
)

func main() { os.Exit(supervise.Main(os.Args[1:])) }
