package slurm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// ErrMunge is a MUNGE credential that did not decode (expired, replayed,
// forged or from another realm).
var ErrMunge = errors.New("munge credential refused")

// Unmunge decodes cred with unmunge (run by r) and returns the uid that
// encoded it. munged refuses a credential it has already decoded (replay)
// or one past its time to live.
func Unmunge(ctx context.Context, r Runner, cred []byte) (uint32, error) {
	if len(cred) == 0 || len(cred) > 4096 || !bytes.HasPrefix(cred, []byte("MUNGE:")) {
		return 0, fmt.Errorf("%w: not a MUNGE credential", ErrMunge)
	}
	out, err := r.Run(ctx, cred, "unmunge", "--output=/dev/null")
	if err != nil {
		var re *RunError
		var ee *exec.ExitError
		if errors.As(err, &re) && errors.As(err, &ee) {
			// unmunge exits with the MUNGE error code.
			return 0, fmt.Errorf("%w: %s (unmunge exit %d)", ErrMunge, re.Stderr, ee.ExitCode())
		}
		return 0, fmt.Errorf("unmunge: %w", err)
	}
	return parseUnmunge(out)
}

// parseUnmunge reads unmunge's metadata: "STATUS: Success (0)" and
// "UID: name (1001)".
func parseUnmunge(out []byte) (uint32, error) {
	var status, uid string
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "STATUS":
			status = strings.TrimSpace(v)
		case "UID":
			uid = strings.TrimSpace(v)
		}
	}
	if !strings.HasPrefix(status, "Success") {
		return 0, fmt.Errorf("%w: status %q", ErrMunge, status)
	}
	open, close := strings.LastIndexByte(uid, '('), strings.LastIndexByte(uid, ')')
	if open < 0 || close < open {
		return 0, fmt.Errorf("%w: no uid in %q", ErrMunge, uid)
	}
	n, err := strconv.ParseUint(uid[open+1:close], 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%w: uid %q", ErrMunge, uid)
	}
	return uint32(n), nil
}
