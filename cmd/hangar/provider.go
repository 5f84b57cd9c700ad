package main

import (
	"github.com/spf13/cobra"
)

func newProviderCmd(c *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "provider",
		Short: "Work with provider plugins: check one against the conformance suite",
		Long: `Provider plugins connect pilot to a cloud (docs/providers.md). These commands
run on this machine and need no pilot.`,
		Example: `  hangar provider test ./bin/hangar-provider-mycloud --config mycloud-test.json`,
		RunE:    groupRunE,
	}
	cmd.AddCommand(newProviderTestCmd(c))
	return cmd
}
