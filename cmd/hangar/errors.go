package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hangarhq/hangar/api/pilotv1"
)

// cliError is an error whose message is written for the user, keeping the
// underlying error for errors.Is/As.
type cliError struct {
	msg   string
	cause error
}

func (e *cliError) Error() string { return e.msg }
func (e *cliError) Unwrap() error { return e.cause }

// hints maps a status code to what the user should try next.
type hints map[codes.Code]string

// rpcError turns a failed call to pilot into a message that says what failed
// and what to do next. what names the operation ("get cluster cl-1").
func (c *cli) rpcError(what string, err error, h hints) error {
	return rpcError(c.pilotAddr, what, err, h)
}

func rpcError(addr, what string, err error, h hints) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%s: %w", what, err)
	}
	var msg string
	switch st.Code() {
	case codes.Unavailable:
		if isTLSProblem(st.Message()) {
			msg = fmt.Sprintf("%s: pilot at %s could not be verified (%s): pass the CA certificate of this pilot with --ca or %s (a pilot started by `hangar up` keeps it at ~/.hangar/pilot/ca/ca.crt)",
				what, addr, st.Message(), envCA)
			break
		}
		msg = fmt.Sprintf("%s: cannot reach pilot at %s (%s): is pilot running? start it with `hangar up`, or point --pilot (or %s) at it",
			what, addr, st.Message(), envPilotAddr)
	case codes.DeadlineExceeded:
		msg = fmt.Sprintf("%s: pilot at %s did not answer in time: check that it is healthy (a pilot started by `hangar up` logs to ~/.hangar/pilot.log)", what, addr)
	case codes.Canceled:
		return &cliError{msg: what + ": cancelled", cause: context.Canceled}
	case codes.Unimplemented:
		msg = fmt.Sprintf("%s: pilot at %s does not implement this call (%s): are hangar and pilot the same version?", what, addr, st.Message())
	default:
		msg = fmt.Sprintf("%s: %s", what, st.Message())
	}
	// Pilot's own messages may already suggest a command; one is enough.
	if hint := h[st.Code()]; hint != "" && !strings.Contains(st.Message(), "`hangar ") {
		msg += "; " + hint
	}
	return &cliError{msg: msg, cause: err}
}

// isTLSProblem reports whether a connection failed in the TLS handshake
// rather than for want of a listener.
func isTLSProblem(msg string) bool {
	for _, s := range []string{"x509:", "tls:", "authentication handshake failed", "certificate"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// jobFailedError reports a job that ended in any state but success. Its
// details were already printed by the progress rendering.
type jobFailedError struct {
	job *pilotv1.Job
}

func (e *jobFailedError) Error() string {
	state := enumName(e.job.GetState().String(), "JOB_STATE_")
	msg := fmt.Sprintf("job %s %s", e.job.GetId(), state)
	if e.job.GetError() != "" {
		msg += ": " + firstLine(e.job.GetError())
	}
	return msg
}

// interruptedError reports that the user stopped a command that follows a
// job; the job itself goes on inside pilot.
type interruptedError struct {
	jobID string
}

func (e *interruptedError) Error() string {
	return fmt.Sprintf("stopped watching job %s; it keeps running in pilot: follow it again with `hangar job watch %s`", e.jobID, e.jobID)
}

func (e *interruptedError) Unwrap() error { return context.Canceled }

// isCanceled reports whether err comes from the user interrupting us.
func isCanceled(ctx context.Context, err error) bool {
	return ctx.Err() != nil || errors.Is(err, context.Canceled)
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}
