// Command table prints the scale benchmarks' JSON reports (written by
// tests/e2e/bench_scale_test.go into a directory, see bench/run) as one
// Markdown table: every figure, the floor or peer measured in the same
// run, their ratio, and the target with whether this run met it.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

type report struct {
	Name    string `json:"name"`
	Size    string `json:"size"`
	Machine string `json:"machine"`
	Rows    []struct {
		Metric  string  `json:"metric"`
		Hangar  float64 `json:"hangar"`
		Against string  `json:"against"`
		Other   float64 `json:"other"`
		Unit    string  `json:"unit"`
		Ratio   float64 `json:"ratio"`
		Target  string  `json:"target"`
		Met     *bool   `json:"met"`
	} `json:"rows"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: table DIR (the $HANGAR_BENCH_DIR of a bench/run)")
		os.Exit(2)
	}
	paths, _ := filepath.Glob(filepath.Join(os.Args[1], "*.json"))
	sort.Strings(paths)
	if len(paths) == 0 {
		fmt.Fprintf(os.Stderr, "table: no reports in %s; did the benchmarks run?\n", os.Args[1])
		os.Exit(1)
	}
	machine := ""
	fmt.Println("| bench | figure | Hangar | against | it | ratio | target |")
	fmt.Println("|---|---|---:|---|---:|---:|---|")
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			fmt.Fprintln(os.Stderr, "table:", err)
			os.Exit(1)
		}
		var r report
		if err := json.Unmarshal(b, &r); err != nil {
			fmt.Fprintf(os.Stderr, "table: %s: %v\n", p, err)
			os.Exit(1)
		}
		machine = r.Machine + ", size " + r.Size
		for _, x := range r.Rows {
			met := ""
			if x.Met != nil {
				met = map[bool]string{true: " met", false: " **missed**"}[*x.Met]
			}
			fmt.Printf("| %s | %s | %.3g %s | %s | %.3g %s | %.2f× | %s%s |\n", r.Name, x.Metric, x.Hangar, x.Unit, x.Against, x.Other, x.Unit, x.Ratio, x.Target, met)
		}
	}
	fmt.Printf("\nMachine: %s.\n", machine)
}
