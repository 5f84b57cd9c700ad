//go:build !unix

package kv

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// The control commands rely on sessions, flock and signals; the server
// itself runs anywhere.

const (
	DefaultStartWait = 20 * time.Second
	DefaultStopWait  = 10 * time.Second
	ReloadLogName    = "reload.log"
)

var errUnsupported = errors.New("hangar-kv start/stop/reload need a unix system")

type StartOptions struct {
	ConfigFile, PIDFile, LogFile string
	Wait                         time.Duration
	Executable                   string
	Logger                       *slog.Logger
}

type StopOptions struct {
	PIDFile string
	Wait    time.Duration
	Logger  *slog.Logger
}

type ReloadOptions struct {
	PIDFile string
	Logger  *slog.Logger
	Now     func() time.Time
}

func Start(context.Context, StartOptions) error   { return errUnsupported }
func Stop(context.Context, StopOptions) error     { return errUnsupported }
func Reload(context.Context, ReloadOptions) error { return errUnsupported }
