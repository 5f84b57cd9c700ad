package main

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"

	"github.com/hangarhq/hangar/api/pilotv1"
)

func newJobShowCmd(c *cli) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show a job's tasks and failures",
		Long: `Show one job as it is now: kind, cluster, state and error, then every task
with its state, title, attempts, duration and error. For each failed task it
lists the nodes whose command failed, with exit code and the last lines of
their output, which is usually where the reason is.

To follow a job that is still running, use 'hangar job watch ID'.`,
		Example: `  hangar job show j-4d5e6f
  hangar job show j-4d5e6f -o json | jq '.tasks[] | select(.state=="TASK_STATE_FAILED")'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.jobShow(cmd.Context(), args[0])
		},
	}
}

func jobNotFound() hints {
	return hints{codes.NotFound: "list jobs with `hangar job list`"}
}

func (c *cli) jobShow(ctx context.Context, id string) error {
	cl, ctx, cancel, err := c.call(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	job, err := cl.jobs.GetJob(ctx, &pilotv1.GetJobRequest{Id: id})
	if err != nil {
		return c.rpcError("get job "+id, err, jobNotFound())
	}
	if c.format == formatJSON {
		return writeJSON(c.stdout, job)
	}
	return writeJob(c.stdout, job)
}

func writeJob(w io.Writer, job *pilotv1.Job) error {
	fmt.Fprintf(w, "Job:       %s\n", job.GetId())
	fmt.Fprintf(w, "Kind:      %s\n", orDash(job.GetKind()))
	fmt.Fprintf(w, "Cluster:   %s\n", orDash(job.GetClusterId()))
	state := enumName(job.GetState().String(), "JOB_STATE_")
	if job.GetCancelRequested() && !jobDone(job) {
		state += " (cancel requested)"
	}
	fmt.Fprintf(w, "State:     %s\n", state)
	if job.GetError() != "" {
		fmt.Fprintf(w, "Error:     %s\n", job.GetError())
	}
	progress := jobProgress(job) + " tasks finished"
	if n := countTasks(job, pilotv1.TaskState_TASK_STATE_SKIPPED); n > 0 {
		progress += fmt.Sprintf(" (%d skipped)", n)
	}
	fmt.Fprintf(w, "Progress:  %s\n", progress)
	if t := formatTime(job.GetCreatedAt()); t != "" {
		fmt.Fprintf(w, "Created:   %s\n", t)
	}
	if t := formatTime(job.GetUpdatedAt()); t != "" {
		fmt.Fprintf(w, "Updated:   %s\n", t)
	}
	if len(job.GetTasks()) > 0 {
		fmt.Fprintln(w, "\nTasks:")
		tw := newTable(w)
		row(tw, "#", "STATE", "TITLE", "ATTEMPTS", "TOOK", "ERROR")
		for i, t := range job.GetTasks() {
			took := ""
			if d, ok := between(t.GetStartedAt(), t.GetFinishedAt()); ok {
				took = formatDuration(d)
			}
			row(tw, strconv.Itoa(i+1), enumName(t.GetState().String(), "TASK_STATE_"), taskTitle(t),
				strconv.Itoa(int(t.GetAttempts())), took, firstLine(t.GetError()))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return writeFailures(w, job)
}

func countTasks(job *pilotv1.Job, state pilotv1.TaskState) int {
	n := 0
	for _, t := range job.GetTasks() {
		if t.GetState() == state {
			n++
		}
	}
	return n
}

// jobProgress is "done/total", counting skipped tasks as done.
func jobProgress(job *pilotv1.Job) string {
	done := 0
	for _, t := range job.GetTasks() {
		if taskDone(t.GetState()) {
			done++
		}
	}
	return fmt.Sprintf("%d/%d", done, len(job.GetTasks()))
}
