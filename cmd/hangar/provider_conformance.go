package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hangarhq/hangar/api/providerv1"
	"github.com/hangarhq/hangar/providers/conformance"
	"github.com/hangarhq/hangar/providers/sdk"
)

// providerTestConfig is the --config file of `hangar provider test`.
type providerTestConfig struct {
	ID          string            `json:"id"`
	Zone        string            `json:"zone"`
	Config      map[string]string `json:"config"`
	Credentials map[string]string `json:"credentials"`
	Image       string            `json:"image"`
}

type providerTestOpts struct {
	configFile, zone, image string
	set, creds              []string
	timeout                 time.Duration
}

func newProviderTestCmd(c *cli) *cobra.Command {
	var o providerTestOpts
	cmd := &cobra.Command{
		Use:   "test PLUGIN [--config FILE] [--set KEY=VALUE]... [--credential KEY=VALUE]... [--image IMAGE]",
		Short: "Run the conformance suite against a provider plugin binary",
		Long: `Start a provider plugin binary as pilot would and run the conformance suite
against it: the behaviour pilot relies on, one rule per check. It creates
networks and instances in the runtime you give, and deletes them again
whatever happens; use a test account.

The checks: Info; ValidateRuntime, and wrong credentials refused as
BadCredentials (when the runtime has credentials); CreateNetwork retried
with one token makes one network, DeleteNetwork twice succeeds; bad input
refused naming the field; RunInstance retried with one token, even
concurrently, makes one instance; Get and List describe it and it reaches
RUNNING; unknown ids answer NotFound; a capability not declared answers
Unimplemented; then, per declared capability, stop/start, resize,
snapshots, reserved addresses, keep_volume; a network in use cannot be
deleted; DeleteInstance twice succeeds; and at the end nothing the suite
created is still listed. A failed check prints the rule the provider broke
and what it answered. A check that the others need (networks, instances)
stops the suite when it fails.

The runtime comes from --config, a JSON file, and the flags (which win):

  {
    "id": "conformance",                      (default "conformance")
    "zone": "eu-1",
    "config": {"region": "eu"},               the runtime's settings
    "credentials": {"api_key": "..."},        never printed
    "image": "ubuntu-22.04"                   what instances run
  }

The image must be one the provider can run and whose agent stays up; for
the docker provider, 'make images IMAGES=conformance' builds
hangar/conformance:latest.

Exit status: 0 when every check passed or was skipped (a capability not
declared), 1 when any failed or the plugin could not be started.`,
		Example: `  hangar provider test ./bin/hangar-provider-example --credential api_key=example-key
  hangar provider test ./bin/hangar-provider-docker --zone docker --image hangar/conformance:latest
  hangar provider test ./bin/hangar-provider-mycloud --config mycloud-test.json -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.providerTest(cmd.Context(), args[0], o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.configFile, "config", "", "JSON `file` with the runtime: id, zone, config, credentials, image")
	f.StringVar(&o.zone, "zone", "", "the runtime's zone")
	f.StringArrayVar(&o.set, "set", nil, "a runtime setting, KEY=VALUE (repeat for several)")
	f.StringArrayVar(&o.creds, "credential", nil, "a runtime credential, KEY=VALUE (repeat for several; never printed)")
	f.StringVar(&o.image, "image", "", "the image instances run")
	f.DurationVar(&o.timeout, "timeout", 30*time.Minute, "bound on the whole suite")
	return cmd
}

func (c *cli) providerTest(ctx context.Context, plugin string, o providerTestOpts) error {
	rc := providerTestConfig{ID: "conformance"}
	if o.configFile != "" {
		b, err := os.ReadFile(o.configFile)
		if err != nil {
			return fmt.Errorf("--config: %w", err)
		}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rc); err != nil {
			return fmt.Errorf("--config %s: %w (want JSON with id, zone, config, credentials, image: see --help)", o.configFile, err)
		}
	}
	set, err := parseKeyValues("--set", "--set region=eu", o.set)
	if err != nil {
		return err
	}
	creds, err := parseKeyValues("--credential", "--credential api_key=...", o.creds)
	if err != nil {
		return err
	}
	rc.Config = merged(rc.Config, set)
	rc.Credentials = merged(rc.Credentials, creds)
	if o.zone != "" {
		rc.Zone = o.zone
	}
	if o.image != "" {
		rc.Image = o.image
	}
	path, err := filepath.Abs(plugin)
	if err == nil {
		var fi os.FileInfo
		if fi, err = os.Stat(path); err == nil && (fi.IsDir() || fi.Mode()&0o111 == 0) {
			err = fmt.Errorf("not an executable file")
		}
	}
	if err != nil {
		return fmt.Errorf("plugin %s: %w (give the path of a provider plugin binary)", plugin, err)
	}

	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	// The plugin's own logs: warnings and worse, unless -v.
	level := slog.LevelWarn
	if c.verbose {
		level = slog.LevelDebug
	}
	client, err := sdk.Start(ctx, path, slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: level})))
	if err != nil {
		return fmt.Errorf("start plugin %s: %w", plugin, err)
	}
	defer client.Close()

	rt := &providerv1.Runtime{Id: rc.ID, Zone: rc.Zone, Config: rc.Config, Credentials: rc.Credentials}
	w := c.stdout
	if c.format == formatJSON {
		w = nil
	} else {
		fmt.Fprintf(w, "conformance of %s (runtime %q, zone %q, image %q)\n", plugin, rt.Id, rt.Zone, rc.Image)
	}
	rep := conformance.RunReport(ctx, client, rt, rc.Image, w)
	counts := map[string]int{}
	for _, r := range rep.Results {
		counts[r.Status]++
	}
	if c.format == formatJSON {
		if err := writeJSONValue(c.stdout, rep); err != nil {
			return err
		}
	} else {
		name := rep.Provider
		if name == "" {
			name = plugin
		}
		fmt.Fprintf(w, "%s: %d passed, %d failed, %d skipped, %d not run\n", name,
			counts["PASS"], counts["FAIL"], counts["SKIP"], counts["NOT RUN"])
	}
	if failed := rep.Failed(); len(failed) > 0 {
		var names []string
		for _, r := range failed {
			names = append(names, r.Name)
		}
		return fmt.Errorf("%d of %d checks failed: %s (each FAIL above names the rule the provider broke)", len(failed), len(rep.Results), strings.Join(names, ", "))
	}
	return nil
}

func merged(a, b map[string]string) map[string]string {
	out := map[string]string{}
	maps.Copy(out, a)
	maps.Copy(out, b)
	return out
}
