package local

import (
	"encoding/json"
	"fmt"
	"os"
)

// LauncherArg is the first argument with which the provider runs its own
// binary as the launcher of an instance (see MaybeLaunch).
const LauncherArg = "__hangar-local-launch"

// launchSpec tells the launcher what to confine and what to exec.
type launchSpec struct {
	// Dir is the instance's directory, the only place it may write.
	Dir string `json:"dir"`
	// Bin is bin_dir: readable and executable.
	Bin string `json:"bin"`
	// Exec and Args are the agent the launcher becomes.
	Exec string   `json:"exec"`
	Args []string `json:"args"`
}

// launcherArgs is the launcher's command line for spec.
func launcherArgs(launcher string, spec launchSpec) ([]string, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	return []string{launcher, LauncherArg, string(b)}, nil
}

// MaybeLaunch makes this process an instance's launcher when it was started
// as one (its first argument is LauncherArg): it confines itself with
// Landlock to what the instance may touch and execs the agent, never
// returning. When it cannot, it says why on stderr (the instance's
// agent.log) and exits 126: an agent is never started unconfined.
// Otherwise it returns at once. The provider runs its own executable as
// the launcher when it does not run as root, so the main of a binary
// serving this provider must call MaybeLaunch first (and a test binary's
// TestMain, for in-process tests).
func MaybeLaunch() {
	if len(os.Args) < 2 || os.Args[1] != LauncherArg {
		return
	}
	os.Exit(launch(os.Args[2:]))
}

func launch(args []string) int {
	if len(args) != 1 {
		fmt.Fprintf(os.Stderr, "hangar local launcher: want one argument (the launch spec), got %d\n", len(args))
		return 126
	}
	var spec launchSpec
	if err := json.Unmarshal([]byte(args[0]), &spec); err != nil || spec.Dir == "" || spec.Exec == "" || len(spec.Args) == 0 {
		fmt.Fprintf(os.Stderr, "hangar local launcher: bad launch spec %q: %v\n", args[0], err)
		return 126
	}
	err := confineAndExec(spec)
	fmt.Fprintf(os.Stderr, "hangar local launcher: cannot start %s confined to %s: %v\n", spec.Exec, spec.Dir, err)
	return 126
}
