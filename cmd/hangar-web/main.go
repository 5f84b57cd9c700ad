//go:build unix

// Command hangar-web is the backend of examples/web: an HTTP service that
// answers GET / with its node's name, so that a client of the load
// balancer in front of it can tell which backend served each request.
// Its start, stop and restart commands are shaped for an app package's
// lifecycle services; restart hands the listening port over to a new
// process before the old one drains, so a node restarts without refusing
// a connection.
//
//	hangar-web serve   --addr IP:PORT --name NAME        (or --config FILE; foreground)
//	hangar-web start   --config FILE --pidfile P --log L [--wait 20s]
//	hangar-web stop    --pidfile P [--wait 15s]
//	hangar-web restart --config FILE --pidfile P --log L [--wait 20s]
//	hangar-web check   --config FILE
//
// The config file has `listen = IP:PORT` and `name = NAME` lines (confd
// renders it from the cluster's metadata).
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
