// Command hangar-kv is the zero-setup demo workload of Hangar: a small
// replicated key-value HTTP service with start/stop/reload commands shaped
// for an app package's lifecycle services (see examples/kv).
package main

import (
	"os"

	"github.com/hangarhq/hangar/cmd/hangar-kv/internal/kv"
)

func main() {
	os.Exit(kv.Main(os.Args[1:], os.Stdout, os.Stderr))
}
