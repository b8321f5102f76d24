package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"octo/internal/agentrpc"
)

// reloadCmd asks the agent on --socket to reload and waits for the outcome.
// The agent that answers the wait may be the new binary: the connection is
// closed by the hand-over, and the next one waits in the socket's queue.
func reloadCmd(args []string) error {
	fs := flag.NewFlagSet("reload", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	socket := fs.String("socket", "", "the agent's socket (default $XDG_RUNTIME_DIR/octo-agent.sock)")
	timeout := fs.Duration("timeout", 80*time.Second, "give up waiting after this long")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stdout)
			fs.PrintDefaults()
			return nil
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if *socket == "" {
		rt := os.Getenv("XDG_RUNTIME_DIR")
		if rt == "" {
			return errors.New("no --socket and no $XDG_RUNTIME_DIR")
		}
		*socket = filepath.Join(rt, "octo-agent.sock")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var b [8]byte
	rand.Read(b[:])
	req := agentrpc.ReloadRequest{Token: hex.EncodeToString(b[:])}
	var reply agentrpc.ReloadReply
	var c *agentrpc.Client
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	for {
		if c == nil {
			var err error
			if c, err = agentrpc.Dial(ctx, "unix", *socket); err != nil {
				return fmt.Errorf("reach the agent: %w", err)
			}
		}
		err := c.Call(ctx, agentrpc.MethodReload, &req, &reply)
		switch {
		case errors.Is(err, agentrpc.ErrConnLost), errors.Is(err, agentrpc.ErrReloading):
			c.Close()
			c = nil // the hand-over refused or closed it; the next agent answers
			continue
		case err != nil:
			return err
		case reply.Done && reply.Error != "":
			return errors.New(reply.Error)
		case reply.Done:
			fmt.Printf("octo-agent %s serves (pid %d)\n", reply.Version, reply.PID)
			return nil
		}
		req.Wait = true
		select {
		case <-ctx.Done():
			return fmt.Errorf("no outcome after %v", *timeout)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// usageError is a mistake in the command line: exit status 2.
type usageError struct{ error }
