package main

import (
	"context"
	"fmt"
	"sort"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"

	"github.com/hangarhq/hangar/api/pilotv1"
)

func newAppShowCmd(c *cli) *cobra.Command {
	var version, lang string
	cmd := &cobra.Command{
		Use:   "show NAME",
		Short: "Show an app version and the parameters it takes",
		Long: `Show one version of an app (the newest unless --version is given): its
description, roles, lint warnings, and the parameters from its config.json.

Each parameter is listed by the key 'hangar cluster create' takes with
--param KEY=VALUE ("cluster.name", "cluster.<role>.count", "env.<key>",
"env.<role>.<key>"), with its type, its default (used when you leave it out),
and its allowed values or range. Password defaults are hidden. With --lang,
labels are shown translated by the package's locale/<lang>.json, where it
has one.`,
		Example: `  hangar app show redis
  hangar app show redis --version 1.2.0
  hangar app show redis --lang zh-cn
  hangar app show redis -o json | jq -r .configJson`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.appShow(cmd.Context(), args[0], version, lang)
		},
	}
	cmd.Flags().StringVar(&version, "version", "", "app version to show (default: the newest)")
	cmd.Flags().StringVar(&lang, "lang", "", "show labels in this `language` of the package's locale/ (e.g. zh-cn)")
	return cmd
}

func (c *cli) appShow(ctx context.Context, name, version, lang string) error {
	cl, ctx, cancel, err := c.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	app, err := cl.apps.GetApp(ctx, &pilotv1.GetAppRequest{Name: name, Version: version})
	if err != nil {
		return c.rpcError("get app "+name, err, hints{codes.NotFound: "list the stored apps with `hangar app list`"})
	}
	if c.format == formatJSON {
		return writeJSON(c.stdout, app)
	}
	w := c.stdout
	writeAppSummary(w, app)
	var texts map[string]string
	if lang != "" {
		loc, ok := app.GetLocales()[lang]
		if !ok {
			langs := make([]string, 0, len(app.GetLocales()))
			for l := range app.GetLocales() {
				langs = append(langs, l)
			}
			sort.Strings(langs)
			fmt.Fprintf(w, "\nThe package has no locale/%s.json; it has: %s\n", lang, joinOrDash(langs))
		}
		texts = loc.GetTexts()
	}
	params, err := parseConfigParams(app.GetConfigJson())
	if err != nil {
		fmt.Fprintf(w, "\nParameters: cannot read the package's %v\n", err)
		return nil
	}
	if len(params) == 0 {
		fmt.Fprintln(w, "\nParameters: none.")
		return nil
	}
	fmt.Fprintf(w, "\nParameters (set with `hangar cluster create %s --param KEY=VALUE`):\n", app.GetName())
	tw := newTable(w)
	row(tw, "KEY", "TYPE", "DEFAULT", "RANGE", "REQUIRED", "LABEL")
	for _, p := range params {
		req := "no"
		if p.Required {
			req = "yes"
		}
		label := p.Label
		if t, ok := texts[label]; ok {
			label = t
		}
		row(tw, p.Key, p.Type, p.Default, p.Range, req, label)
	}
	return tw.Flush()
}
