package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"octo/internal/client"
)

// Detach keys of a tty attachment, as Docker's: Ctrl-P Ctrl-Q.
const (
	ctrlP = 0x10
	ctrlQ = 0x11
)

func runCmd(ctx context.Context, args []string) error {
	f := newCLIFlags("run", false)
	tty := f.fs.Bool("t", false, "give the session a terminal: raw mode here, size changes forwarded (implies -i)")
	interactive := f.fs.Bool("i", false, "forward standard input (without it the session's stdin is closed)")
	detach := f.fs.Bool("d", false, "print the session's id and return at once")
	cwd := f.fs.String("cwd", "", "working directory, relative to the workspace")
	name := f.fs.String("name", "", "the session's name")
	env := envFlag{}
	f.fs.Var(env, "env", "an environment variable `K=V` (repeatable)")
	f.fs.SetOutput(os.Stderr)
	// Flags end at the command: what follows is its argv, untouched.
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	argv := f.fs.Args()
	if len(argv) == 0 {
		return fmt.Errorf("%w: run needs a command: octo run [FLAGS] -- CMD [ARG...]", errUsage)
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	req := client.StartRequest{Command: argv, Cwd: *cwd, Env: env, TTY: *tty, Name: *name}
	if *tty {
		if rows, cols, ok := termSize(0); ok {
			req.Rows, req.Cols = rows, cols
		}
	}
	if *detach {
		s, err := c.Start(ctx, req)
		if err != nil {
			return err
		}
		fmt.Println(s.ID)
		return nil
	}
	stdin := *tty || *interactive
	// Started and attached in one request. Without -i the session's stdin
	// is closed at once, with it when ours ends; but not when ours is a
	// terminal: its input has no end, and closing the connection to
	// detach would close the session's stdin too.
	closeStdin := !(*tty && isTerminal(0))
	id, a, s, err := c.StartAttached(ctx, req, client.AttachOptions{Stdin: stdin, CloseStdin: closeStdin})
	if err != nil {
		return err
	}
	if a == nil { // it did not start
		if s.State == "failed" {
			fmt.Fprintf(os.Stderr, "octo: session %s did not start: %s\n", s.ID, s.Error)
			return exitCode(127)
		}
		return sessionExit(*s)
	}
	return attach(ctx, c, id, attachMode{tty: *tty, stdin: stdin, closeStdin: closeStdin, run: true, offset: 0}, a)
}

func attachCmd(ctx context.Context, args []string) error {
	f := newCLIFlags("attach", false)
	offset := f.fs.Int64("offset", -1, "replay output from this byte offset (default: from now on; 0: all that is kept)")
	noStdin := f.fs.Bool("no-stdin", false, "do not forward standard input")
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	s, err := c.Session(ctx, pos[0])
	if err != nil {
		return err
	}
	return attach(ctx, c, s.ID, attachMode{tty: s.TTY, stdin: !*noStdin, offset: *offset}, nil)
}

// attachMode says how attach behaves.
type attachMode struct {
	tty        bool  // the session has a terminal: raw mode here, resizes, detach keys
	stdin      bool  // forward standard input
	closeStdin bool  // close the session's stdin when ours ends (at once without stdin)
	run        bool  // octo run: Ctrl-C is forwarded (octo attach: it detaches)
	offset     int64 // where output starts; -1 the current end
}

// attach streams a session's output to stdout and stdin to it until the
// session ends (its exit status becomes octo's) or the user detaches.
// Signals are forwarded to the session, so ctx is not cancelled by them.
// first, if not nil, is the attachment to begin with.
func attach(ctx context.Context, c *client.Client, id string, m attachMode, first *client.Attachment) error {
	ctx = context.WithoutCancel(ctx)
	raw := m.tty && isTerminal(0)
	if raw {
		restore, err := makeRaw(0)
		if err != nil {
			return fmt.Errorf("terminal raw mode: %w", err)
		}
		defer restore()
		if !m.run {
			resize(ctx, c, id)
		}
	}
	var (
		cur        atomic.Pointer[client.Attachment]
		detached   atomic.Bool
		detachOnce sync.Once
	)
	detach := func() {
		detachOnce.Do(func() {
			detached.Store(true)
			if a := cur.Load(); a != nil {
				a.Close()
			}
		})
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT, unix.SIGWINCH)
	defer signal.Stop(sigs)
	go forwardSignals(ctx, c, id, sigs, m, raw, detach)
	offset := m.offset
	stdinStarted := false
	for {
		a, err := first, error(nil)
		if a == nil {
			a, err = c.Attach(ctx, id, client.AttachOptions{Offset: offset, Stdin: m.stdin, CloseStdin: m.closeStdin})
		}
		first = nil
		if err != nil {
			return err
		}
		if offset >= 0 && a.Offset > offset {
			note(raw, "output from offset %d to %d was dropped before it was read", offset, a.Offset)
		}
		cur.Store(a)
		if detached.Load() {
			a.Close()
		}
		if m.stdin && !stdinStarted { // input waits for the first attachment
			stdinStarted = true
			go forwardStdin(&cur, m, raw, detach)
		}
		out := &stdoutWriter{}
		_, cerr := io.Copy(out, a)
		a.Close()
		if out.err != nil {
			return fmt.Errorf("write output: %w", out.err) // the session goes on
		}
		if detached.Load() {
			note(raw, "detached from %s at output offset %d (octo attach --offset %d %s resumes there)", id, a.Next(), a.Next(), id)
			return nil
		}
		s, err := c.Session(ctx, id)
		if err != nil {
			return err
		}
		if !s.Running() && a.Next() >= s.OutputSize {
			return sessionExit(s)
		}
		if a.Next() == offset && cerr == nil {
			time.Sleep(100 * time.Millisecond) // no progress: do not spin
		}
		// The stream ended early (the connection broke, or output went
		// past what the agent keeps): attach again where it stopped.
		offset = a.Next()
	}
}

// stdoutWriter writes to stdout and remembers a failed write, which no
// attaching again would cure.
type stdoutWriter struct{ err error }

func (w *stdoutWriter) Write(p []byte) (int, error) {
	n, err := os.Stdout.Write(p)
	if err != nil {
		w.err = err
	}
	return n, err
}

// sessionExit is the error that passes an ended session's status on.
func sessionExit(s client.Session) error {
	if s.State == "failed" || s.State == "lost" {
		fmt.Fprintf(os.Stderr, "octo: session %s %s: %s\n", s.ID, s.State, s.Error)
	}
	if st := s.ExitStatus(); st != 0 {
		return exitCode(st)
	}
	return nil
}

// note prints a message for the user on stderr, in raw mode too.
func note(raw bool, format string, args ...any) {
	eol := "\n"
	if raw {
		eol = "\r\n"
	}
	fmt.Fprintf(os.Stderr, "octo: "+format+eol, args...)
}

func resize(ctx context.Context, c *client.Client, id string) {
	if rows, cols, ok := termSize(0); ok {
		c.Resize(ctx, id, rows, cols)
	}
}

// forwardSignals passes the signals octo gets on to the session: window
// size changes as resizes, Ctrl-C of octo attach (without a terminal) as
// a detach, the rest as signals to its process group.
func forwardSignals(ctx context.Context, c *client.Client, id string, sigs <-chan os.Signal, m attachMode, raw bool, detach func()) {
	for sig := range sigs {
		switch {
		case sig == unix.SIGWINCH:
			if raw {
				resize(ctx, c, id)
			}
		case sig == unix.SIGINT && !m.run && !m.tty:
			detach()
		default:
			if err := c.Signal(ctx, id, unix.SignalName(sig.(syscall.Signal))[3:]); err != nil {
				note(raw, "forward %v: %v", sig, err)
			}
		}
	}
}

// forwardStdin copies stdin to the current attachment. In raw mode Ctrl-P
// Ctrl-Q detaches; a lone Ctrl-P is held until the next byte shows it is
// not the detach sequence.
func forwardStdin(cur *atomic.Pointer[client.Attachment], m attachMode, raw bool, detach func()) {
	buf := make([]byte, 32<<10)
	held := false
	for {
		n, err := os.Stdin.Read(buf)
		out := buf[:n]
		if raw && n > 0 {
			out = make([]byte, 0, n+1)
			for _, b := range buf[:n] {
				switch {
				case held && b == ctrlQ:
					if a := cur.Load(); a != nil && len(out) > 0 {
						a.Write(out) // what was typed before the keys
					}
					detach()
					return
				case held:
					out = append(out, ctrlP)
					held = false
				}
				if b == ctrlP {
					held = true
					continue
				}
				out = append(out, b)
			}
		}
		if len(out) > 0 {
			if a := cur.Load(); a != nil {
				a.Write(out)
			}
		}
		if err != nil {
			if m.closeStdin {
				if a := cur.Load(); a != nil {
					a.CloseWrite()
				}
			}
			return
		}
	}
}
