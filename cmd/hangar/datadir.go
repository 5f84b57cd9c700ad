package main

import (
	"fmt"
	"path/filepath"
)

// dataDir resolves --data-dir: the flag's value, or $HOME/.hangar.
func (c *cli) dataDir(flag string) (string, error) {
	if flag != "" {
		abs, err := filepath.Abs(flag)
		if err != nil {
			return "", fmt.Errorf("--data-dir %q: %w", flag, err)
		}
		return abs, nil
	}
	home, err := c.userHomeDir()
	if err != nil || home == "" {
		return "", fmt.Errorf("find the home folder for the default --data-dir: %v; pass --data-dir", err)
	}
	return filepath.Join(home, ".hangar"), nil
}

func pidPath(dataDir string) string { return filepath.Join(dataDir, "pilot.pid") }
func logPath(dataDir string) string { return filepath.Join(dataDir, "pilot.log") }
