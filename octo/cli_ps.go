package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"octo/internal/client"
)

func psCmd(ctx context.Context, args []string) error {
	f := newCLIFlags("ps", true)
	all := f.fs.Bool("a", false, "also list ended sessions")
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	list, err := c.Sessions(ctx)
	if err != nil {
		return err
	}
	shown := list[:0]
	for _, s := range list {
		if *all || s.Running() {
			shown = append(shown, s)
		}
	}
	if f.json {
		return printJSON(shown)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSTATE\tSTARTED\tOUTPUT\tCOMMAND")
	for _, s := range shown {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Name, stateText(s), ago(s.StartTime), bytesText(s.OutputSize), strings.Join(s.Command, " "))
	}
	return tw.Flush()
}

// stateText is a session's state with how it ended.
func stateText(s client.Session) string {
	switch {
	case s.ExitCode != nil:
		return fmt.Sprintf("exited (%d)", *s.ExitCode)
	case s.Signal != "":
		return "killed (" + s.Signal + ")"
	}
	return s.State
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func logsCmd(ctx context.Context, args []string) error {
	f := newCLIFlags("logs", false)
	follow := f.fs.Bool("f", false, "follow: keep printing until the session ends")
	offset := f.fs.Int64("offset", 0, "start at this byte offset")
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	_, err = c.CopyOutput(ctx, pos[0], *offset, os.Stdout, *follow, func(g client.Gap) {
		fmt.Fprintf(os.Stderr, "octo: output from offset %d to %d was dropped before it was read (the agent keeps only the newest output)\n", g.From, g.To)
	})
	if err != nil && ctx.Err() != nil {
		return exitCode(130) // interrupted while following
	}
	return err
}

func stopCmd(ctx context.Context, args []string) error {
	f := newCLIFlags("stop", true)
	grace := f.fs.Duration("grace", 0, "time between TERM and KILL (default: the server's, 10s)")
	pos, err := f.parse(args, 1, -1)
	if err != nil {
		return err
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	for _, id := range pos {
		s, err := c.Stop(ctx, id, *grace)
		if err != nil {
			return err
		}
		if f.json {
			printJSON(s)
		} else {
			fmt.Printf("%s\t%s\n", s.ID, stateText(s))
		}
	}
	return nil
}

func signalCmd(ctx context.Context, args []string) error {
	f := newCLIFlags("signal", false)
	pos, err := f.parse(args, 2, 2)
	if err != nil {
		return err
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	return c.Signal(ctx, pos[0], pos[1])
}

func rmCmd(ctx context.Context, args []string) error {
	f := newCLIFlags("rm", false)
	force := f.fs.Bool("f", false, "stop a running session first")
	pos, err := f.parse(args, 1, -1)
	if err != nil {
		return err
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	for _, id := range pos {
		if err := removeSession(ctx, c, id, *force); err != nil {
			return err
		}
	}
	return nil
}

// removeSession removes an ended session, refusing a running one unless
// forced (the server stops it, then removes it), and checks that it is
// gone: a server without the remove call would only have stopped it.
func removeSession(ctx context.Context, c *client.Client, id string, force bool) error {
	s, err := c.Session(ctx, id)
	if err != nil {
		return err
	}
	if s.Running() && !force {
		return fmt.Errorf("session %s is running: stop it first (octo stop %s), or octo rm -f %s", id, id, id)
	}
	if err := c.Remove(ctx, id); err != nil {
		return err
	}
	if _, err := c.Session(ctx, id); client.ErrorCode(err) != "not_found" {
		return fmt.Errorf("session %s is still there: this server does not remove sessions (DELETE /api/v1/sessions/ID?remove=1)", id)
	}
	return nil
}
