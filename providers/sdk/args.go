package sdk

import (
	"fmt"
	"io"
)

// HandleArgs is a plugin main's answer to arguments. Pilot starts a plugin
// with none; a person running the binary by hand gets --help (usage, with
// %s for the version) or --version, and anything else is refused with a
// hint. It returns the exit status for os.Exit.
func HandleArgs(name, version, usage string, args []string, stdout, stderr io.Writer) int {
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprintf(stdout, usage, version)
		return 0
	case "-version", "--version", "version":
		fmt.Fprintln(stdout, version)
		return 0
	}
	fmt.Fprintf(stderr, "%s: unknown argument %q (it takes none; try --help)\n", name, args[0])
	return 2
}
