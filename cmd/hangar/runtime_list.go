package main

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hangarhq/hangar/api/pilotv1"
)

func newRuntimeListCmd(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List runtimes",
		Long: `List the runtimes pilot knows: id, provider, zone and the provider
settings (secret settings are never returned by pilot).`,
		Example: `  hangar runtime list
  hangar runtime list -o json | jq -r '.runtimes[].id'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.runtimeList(cmd.Context())
		},
	}
}

func (c *cli) runtimeList(ctx context.Context) error {
	cl, ctx, cancel, err := c.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := cl.runtimes.ListRuntimes(ctx, &pilotv1.ListRuntimesRequest{})
	if err != nil {
		return c.rpcError("list runtimes", err, nil)
	}
	if c.format == formatJSON {
		return writeJSON(c.stdout, resp)
	}
	if len(resp.GetRuntimes()) == 0 {
		fmt.Fprintln(c.stdout, "No runtimes yet. `hangar up` creates the local one; `hangar runtime create` adds others.")
		return nil
	}
	tw := newTable(c.stdout)
	row(tw, "ID", "PROVIDER", "ZONE", "CONFIG", "CREATED")
	for _, r := range resp.GetRuntimes() {
		row(tw, r.GetId(), r.GetProvider(), r.GetZone(), formatConfig(r.GetConfig()), formatTime(r.GetCreatedAt()))
	}
	return tw.Flush()
}

// formatConfig prints a map as sorted k=v pairs.
func formatConfig(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}
