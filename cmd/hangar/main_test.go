package main

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// fakePilotEnv makes the test binary act as a pilot binary: `hangar up`
// tests start it as "pilot" to exercise the real detached start.
const fakePilotEnv = "HANGAR_TEST_FAKE_PILOT"

func TestMain(m *testing.M) {
	if os.Getenv(fakePilotEnv) == "1" {
		os.Exit(fakePilotMain(os.Args[1:]))
	}
	goleak.VerifyTestMain(m)
}
