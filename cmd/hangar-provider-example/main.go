// Command hangar-provider-example serves providers/example, the provider
// that docs/providers.md walks through, as a plugin pilot can start.
package main

import (
	"fmt"
	"os"

	"github.com/hangarhq/hangar/providers/example"
	"github.com/hangarhq/hangar/providers/sdk"
)

func main() {
	if len(os.Args) > 1 {
		// Pilot passes no arguments; a person reading --help does.
		fmt.Printf("hangar-provider-example %s: the example provider of docs/providers.md, a plugin pilot starts.\n"+
			"Its cloud is a table in memory; its one API key (credential api_key) is %q.\n"+
			"Check it with: hangar provider test %s --credential api_key=%s\n", example.Version, example.APIKey, os.Args[0], example.APIKey)
		os.Exit(0)
	}
	// Capture the real stderr now: Serve replaces os.Stderr with a pipe.
	log := sdk.NewPluginLogger(os.Stderr, nil)
	sdk.Serve(example.New(), sdk.HCLog(log))
}
