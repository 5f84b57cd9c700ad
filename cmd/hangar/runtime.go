package main

import (
	"github.com/spf13/cobra"
)

func newRuntimeCmd(c *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "runtime",
		Short: "List and create runtimes (where clusters run)",
		Long: `Work with runtimes. A runtime is a place clusters run: a provider plugin
("local" for processes on the pilot's machine, "docker" for containers, a
cloud's provider...) with a zone and the provider's settings. 'hangar up'
creates the runtime "local"; 'hangar cluster create --runtime ID' picks one.`,
		Example: `  hangar runtime list
  hangar runtime create docker1 --provider docker --zone local`,
		RunE: groupRunE,
	}
	cmd.AddCommand(newRuntimeListCmd(c), newRuntimeCreateCmd(c))
	return cmd
}
