package session

import (
	"errors"
	"fmt"
	"io/fs"

	"octo/internal/agentrpc"
)

// errorf returns a protocol error with code and a formatted message.
func errorf(code agentrpc.Code, format string, args ...any) error {
	return agentrpc.Errorf(code, fmt.Sprintf(format, args...))
}

// bare strips the path from an error about the agent's own files, so that
// messages do not show host paths outside the workspace.
func bare(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
