package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hangarhq/hangar/api/pilotv1"
	streamv1 "github.com/hangarhq/hangar/api/streamv1"
	"github.com/hangarhq/hangar/internal/backoff"
)

// outputTailLines is how much of a failed command's output is shown.
const outputTailLines = 10

// renderJobProgress writes the progress of one job from its successive
// snapshots. In text mode it prints a line whenever a task starts, finishes or
// is retried, and at the end the final state with the failed nodes' exit codes
// and output; in JSON mode it prints each snapshot as one line of JSON. It
// returns the last snapshot; an error from the sequence ends the rendering
// and is returned with it.
func renderJobProgress(w io.Writer, snapshots iter.Seq2[*pilotv1.Job, error], format outputFormat) (*pilotv1.Job, error) {
	p := newProgressPrinter(w)
	var last *pilotv1.Job
	for job, err := range snapshots {
		if err != nil {
			return last, err
		}
		last = job
		if format == formatJSON {
			if err := writeJSONLine(w, job); err != nil {
				return last, err
			}
			continue
		}
		p.update(job)
		if p.err != nil {
			return last, p.err
		}
	}
	if last == nil {
		return nil, errors.New("pilot sent no state for the job")
	}
	if format == formatText && jobDone(last) {
		p.finish(last)
	}
	return last, p.err
}

func jobDone(j *pilotv1.Job) bool {
	switch j.GetState() {
	case pilotv1.JobState_JOB_STATE_SUCCEEDED, pilotv1.JobState_JOB_STATE_FAILED, pilotv1.JobState_JOB_STATE_CANCELLED:
		return true
	}
	return false
}

func taskDone(s pilotv1.TaskState) bool {
	switch s {
	case pilotv1.TaskState_TASK_STATE_SUCCEEDED, pilotv1.TaskState_TASK_STATE_FAILED, pilotv1.TaskState_TASK_STATE_SKIPPED:
		return true
	}
	return false
}

// progressPrinter remembers what it has already said about each task, so a
// snapshot only produces lines for what changed since the previous one.
type progressPrinter struct {
	w        io.Writer
	started  bool
	states   map[string]pilotv1.TaskState
	attempts map[string]int32
	errors   map[string]string // last error shown per task
	finished int               // tasks shown as succeeded or failed
	err      error
}

func newProgressPrinter(w io.Writer) *progressPrinter {
	return &progressPrinter{w: w, states: map[string]pilotv1.TaskState{}, attempts: map[string]int32{}, errors: map[string]string{}}
}

func (p *progressPrinter) printf(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

func (p *progressPrinter) update(job *pilotv1.Job) {
	tasks := job.GetTasks()
	if !p.started {
		p.started = true
		p.printf("Job %s (%s", job.GetId(), orUnknown(job.GetKind()))
		if job.GetClusterId() != "" {
			p.printf(", cluster %s", job.GetClusterId())
		}
		p.printf("): %s\n", plural(len(tasks), "task"))
	}
	width := len(strconv.Itoa(len(tasks)))
	blank := strings.Repeat(" ", width*2+3) // as wide as "[ 4/12]"

	// Finished tasks first, so the counter climbs in the order tasks ended
	// and a step that started in the same snapshot reads after them.
	for _, t := range tasks {
		prev, cur := p.states[t.GetId()], t.GetState()
		if taskDone(prev) && !taskDone(cur) {
			// A finished task ran again (a resumed job): count it anew.
			if prev != pilotv1.TaskState_TASK_STATE_SKIPPED {
				p.finished--
			}
			continue
		}
		if prev == cur || !taskDone(cur) || cur == pilotv1.TaskState_TASK_STATE_SKIPPED {
			continue
		}
		p.finished++
		took := ""
		if d, ok := between(t.GetStartedAt(), t.GetFinishedAt()); ok {
			took = "  " + formatDuration(d)
		}
		mark := "✓"
		if cur == pilotv1.TaskState_TASK_STATE_FAILED {
			mark = "✗"
		}
		p.printf("[%*d/%d] %s %s%s\n", width, p.finished, len(tasks), mark, taskTitle(t), took)
		if cur == pilotv1.TaskState_TASK_STATE_FAILED && t.GetError() != "" {
			p.printf("%s   %s\n", blank, firstLine(t.GetError()))
		}
	}
	for _, t := range tasks {
		id, prev, cur := t.GetId(), p.states[t.GetId()], t.GetState()
		requeued := prev == pilotv1.TaskState_TASK_STATE_RUNNING && cur == pilotv1.TaskState_TASK_STATE_PENDING
		if !taskDone(cur) && t.GetError() != "" && (t.GetError() != p.errors[id] || requeued) {
			// An error on an unfinished task means the engine will retry it.
			// The same error again counts only when the task went back to
			// pending, as a running task may still carry its last error.
			p.printf("%s ↻ %s: attempt %d failed: %s; retrying\n", blank, taskTitle(t), max(t.GetAttempts(), 1), firstLine(t.GetError()))
		}
		retried := p.attempts[id] > 0 && t.GetAttempts() > p.attempts[id]
		if cur == pilotv1.TaskState_TASK_STATE_RUNNING && (prev != cur || retried) {
			attempt := ""
			if t.GetAttempts() > 1 {
				attempt = fmt.Sprintf(" (attempt %d)", t.GetAttempts())
			}
			p.printf("%s ▸ %s%s ...\n", blank, taskTitle(t), attempt)
		}
	}
	for _, t := range tasks {
		p.states[t.GetId()] = t.GetState()
		p.attempts[t.GetId()] = t.GetAttempts()
		if t.GetError() != "" {
			p.errors[t.GetId()] = t.GetError()
		}
	}
}

// finish prints the job's outcome and, when it failed, what each failed node
// reported.
func (p *progressPrinter) finish(job *pilotv1.Job) {
	took := ""
	if d, ok := between(job.GetCreatedAt(), job.GetUpdatedAt()); ok {
		took = " after " + formatDuration(d)
	}
	total, skipped := len(job.GetTasks()), countTasks(job, pilotv1.TaskState_TASK_STATE_SKIPPED)
	switch job.GetState() {
	case pilotv1.JobState_JOB_STATE_SUCCEEDED:
		p.printf("Job %s succeeded%s: %d/%d tasks done.\n", job.GetId(), took, total-skipped, total)
	case pilotv1.JobState_JOB_STATE_CANCELLED:
		p.printf("Job %s was cancelled%s.\n", job.GetId(), took)
	default:
		p.printf("Job %s failed%s", job.GetId(), took)
		if job.GetError() != "" {
			p.printf(": %s", job.GetError())
		}
		p.printf("\n")
	}
	if skipped > 0 {
		p.printf("%d of %s were skipped.\n", skipped, plural(total, "task"))
	}
	if p.err == nil {
		p.err = writeFailures(p.w, job)
	}
}

// writeFailures prints, for every failed task, its error and each failed
// node's id, role, exit code and the end of its output.
func writeFailures(w io.Writer, job *pilotv1.Job) error {
	p := &progressPrinter{w: w}
	for _, t := range job.GetTasks() {
		if t.GetState() != pilotv1.TaskState_TASK_STATE_FAILED {
			continue
		}
		p.printf("\nFailed: %s\n", taskTitle(t))
		if t.GetError() != "" {
			p.printf("  error: %s\n", t.GetError())
		}
		for _, r := range t.GetNodeResults() {
			if !nodeFailed(r) {
				continue
			}
			p.printf("  node %s (role %s", orUnknown(r.GetNodeId()), orUnknown(r.GetRole()))
			if r.GetInstanceId() != "" {
				p.printf(", instance %s", r.GetInstanceId())
			}
			// Only a command that ran has an exit code; an unreachable or
			// rejected node's "0" would read as success.
			switch st := nodeState(r.GetState()); st {
			case "", "exited":
				p.printf("): exit code %d", r.GetExitCode())
			case "timed out":
				p.printf("): exit code %d (%s)", r.GetExitCode(), st)
			default:
				p.printf("): %s", st)
			}
			p.printf("\n")
			if r.GetError() != "" {
				p.printf("    error: %s\n", r.GetError())
			}
			lines := tailLines(r.GetOutput(), outputTailLines)
			if len(lines) == 0 {
				p.printf("    (no output)\n")
			}
			for _, l := range lines {
				p.printf("    | %s\n", l)
			}
		}
	}
	return p.err
}

func nodeFailed(r *pilotv1.NodeResult) bool {
	st := r.GetState()
	return r.GetExitCode() != 0 || r.GetError() != "" || (st != streamv1.CommandState_COMMAND_STATE_UNSPECIFIED && st != streamv1.CommandState_COMMAND_STATE_EXITED)
}

// nodeState is a command state in words: "exited", "timed out",
// "unreachable"; "" when unknown.
func nodeState(s streamv1.CommandState) string {
	if s == streamv1.CommandState_COMMAND_STATE_UNSPECIFIED {
		return ""
	}
	return strings.ReplaceAll(enumName(s.String(), "COMMAND_STATE_"), "_", " ")
}

func taskTitle(t *pilotv1.Task) string {
	if t.GetTitle() != "" {
		return t.GetTitle()
	}
	if t.GetKind() != "" {
		return t.GetKind()
	}
	return t.GetId()
}

// plural is "1 task", "3 tasks".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func orUnknown(s string) string {
	if s == "" {
		return "?"
	}
	return s
}

// watchConfig tunes how `job watch` rides out a broken stream.
type watchConfig struct {
	minBackoff, maxBackoff time.Duration
	// giveUpAfter is how long without any answer from pilot ends the watch;
	// firstContactTimeout replaces it until the first answer.
	giveUpAfter         time.Duration
	firstContactTimeout time.Duration
}

// watchLostError ends a watch that could not reach pilot for too long.
type watchLostError struct {
	after time.Duration
	cause error
}

func (e *watchLostError) Error() string {
	return fmt.Sprintf("no answer from pilot for %s (last error: %s)", formatDuration(e.after), status.Convert(e.cause).Message())
}

func (e *watchLostError) Unwrap() error { return e.cause }

// errStreamEnded marks a watch stream that closed before the job finished.
var errStreamEnded = errors.New("the watch stream ended before the job finished")

// watchJobSnapshots yields the job's snapshots from JobService.WatchJob until
// the job reaches a terminal state. A broken stream is reopened with backoff:
// the job lives in pilot's etcd, and a new stream starts with its current
// state, so nothing is lost. Errors that retrying cannot fix (an unknown job)
// and giving up after cfg.giveUpAfter without contact end the sequence with
// that error.
func watchJobSnapshots(ctx context.Context, jobs pilotv1.JobServiceClient, id string, cfg watchConfig, logger *slog.Logger) iter.Seq2[*pilotv1.Job, error] {
	return func(yield func(*pilotv1.Job, error) bool) {
		var last *pilotv1.Job
		bo := backoff.New(cfg.minBackoff, cfg.maxBackoff)
		lastContact := time.Now()
		outage := false
		for {
			n, stopped, err := streamJobOnce(ctx, jobs, id, func(j *pilotv1.Job) bool {
				if olderThan(j, last) {
					// A reconnect can replay a state already shown.
					return true
				}
				last = j
				return yield(j, nil)
			})
			if stopped {
				return
			}
			if n > 0 {
				lastContact = time.Now()
				bo.Reset()
				if outage {
					logger.Info("watching the job again", "job", id)
					outage = false
				}
			}
			if err == nil {
				if last != nil && jobDone(last) {
					return
				}
				err = errStreamEnded
			}
			if ctx.Err() != nil {
				yield(nil, ctx.Err())
				return
			}
			if !retryableWatchError(err) {
				yield(nil, err)
				return
			}
			// Until pilot has answered once, an address that is simply wrong
			// is likelier than a restart: give up sooner.
			limit := cfg.giveUpAfter
			if last == nil {
				limit = min(limit, cfg.firstContactTimeout)
			}
			if time.Since(lastContact) > limit {
				yield(nil, &watchLostError{after: limit, cause: err})
				return
			}
			if !outage {
				logger.Warn("lost the job's watch stream; reconnecting", "job", id, "error", err)
				outage = true
			} else {
				logger.Debug("reconnect failed", "job", id, "error", err)
			}
			if err := backoff.Sleep(ctx, bo.Next()); err != nil {
				yield(nil, err)
				return
			}
		}
	}
}

// olderThan reports whether snapshot j predates prev by its update time.
func olderThan(j, prev *pilotv1.Job) bool {
	if prev == nil || j.GetUpdatedAt() == nil || prev.GetUpdatedAt() == nil {
		return false
	}
	return j.GetUpdatedAt().AsTime().Before(prev.GetUpdatedAt().AsTime())
}

// streamJobOnce runs one WatchJob stream, handing each snapshot to emit. It
// returns how many snapshots arrived, whether emit asked to stop, and the
// stream's error (nil when the server closed it).
func streamJobOnce(ctx context.Context, jobs pilotv1.JobServiceClient, id string, emit func(*pilotv1.Job) bool) (n int, stopped bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel() // also ends the stream when emit stops early
	stream, err := jobs.WatchJob(sctx, &pilotv1.WatchJobRequest{Id: id})
	if err != nil {
		return 0, false, err
	}
	for {
		j, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return n, false, nil
		}
		if err != nil {
			return n, false, err
		}
		n++
		if !emit(j) {
			return n, true, nil
		}
	}
}

func retryableWatchError(err error) bool {
	if errors.Is(err, errStreamEnded) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.Internal, codes.Aborted:
		return true
	}
	return false
}

// followJob renders job id's progress to w until it ends. It returns the last
// snapshot and a *jobFailedError when the job did not succeed.
func (c *cli) followJob(ctx context.Context, cl *pilotClients, id string, w io.Writer, format outputFormat) (*pilotv1.Job, error) {
	last, err := renderJobProgress(w, watchJobSnapshots(ctx, cl.jobs, id, c.watch, c.logger), format)
	if err != nil {
		if isCanceled(ctx, err) {
			return last, &interruptedError{jobID: id}
		}
		var lost *watchLostError
		if errors.As(err, &lost) {
			return last, &cliError{cause: err, msg: fmt.Sprintf(
				"watch job %s: %v: is pilot running at %s? start it with `hangar up`, or point --pilot (or %s) at it; the job goes on inside pilot: follow it again with `hangar job watch %s`",
				id, lost, c.pilotAddr, envPilotAddr, id)}
		}
		return last, c.rpcError("watch job "+id, err, hints{
			codes.NotFound:    "list jobs with `hangar job list`",
			codes.Unavailable: "the job goes on inside pilot; follow it again with `hangar job watch " + id + "`",
		})
	}
	if last.GetState() != pilotv1.JobState_JOB_STATE_SUCCEEDED {
		return last, &jobFailedError{job: last}
	}
	return last, nil
}
