//go:build !unix

package main

import (
	"errors"
	"os"
)

var errUnsupported = errors.New("starting and stopping pilot with hangar up/down is only supported on Unix systems; start pilot yourself")

func startDetached(string, []string, string, *os.File) (int, error) { return 0, errUnsupported }
func childExited(int) (bool, string)                                { return false, "" }
func processAlive(int) bool                                         { return false }
func terminateProcess(int) error                                    { return errUnsupported }
func killProcess(int) error                                         { return errUnsupported }
func processName(int) string                                        { return "" }
