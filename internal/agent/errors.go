package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"

	"octo/internal/agentrpc"
)

// errorf returns a protocol error with code and a formatted message.
func errorf(code agentrpc.Code, format string, args ...any) error {
	return agentrpc.Errorf(code, fmt.Sprintf(format, args...))
}

// fileErr turns an error from a workspace operation on rel into a protocol
// error whose message names op and rel (never the absolute host path).
func fileErr(op, rel string, err error) error {
	if err == nil {
		return nil
	}
	var pe *agentrpc.Error
	if errors.As(err, &pe) {
		return err
	}
	if rel == "" {
		rel = "."
	}
	code, what := classify(err)
	return errorf(code, "%s %s: %s", op, rel, what)
}

// classify maps an OS error to a protocol code and a short description.
func classify(err error) (agentrpc.Code, string) {
	// os.Root reports escapes (.., absolute symlinks) with this text only.
	if strings.Contains(err.Error(), "path escapes from parent") {
		return agentrpc.CodeOutsideWorkspace, "path is outside the workspace"
	}
	if strings.HasSuffix(err.Error(), "not a directory") {
		return agentrpc.CodeInvalid, "not a directory"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.ENOENT:
			return agentrpc.CodeNotFound, "no such file or directory"
		case syscall.EEXIST:
			return agentrpc.CodeExists, "already exists"
		case syscall.EACCES, syscall.EPERM, syscall.EROFS:
			return agentrpc.CodePermission, errno.Error()
		case syscall.ENOTDIR:
			return agentrpc.CodeInvalid, "a path component is not a directory"
		case syscall.EISDIR:
			return agentrpc.CodeInvalid, "is a directory"
		case syscall.ENOTEMPTY:
			return agentrpc.CodeInvalid, "directory not empty; remove it recursively"
		case syscall.ENAMETOOLONG, syscall.EINVAL, syscall.ELOOP, syscall.EXDEV:
			return agentrpc.CodeInvalid, errno.Error()
		case syscall.ENXIO:
			return agentrpc.CodeInvalid, "not a regular file (a socket, or a device without a driver)"
		case syscall.ENOSPC, syscall.EDQUOT:
			return agentrpc.CodeNoSpace, errno.Error()
		case syscall.EFBIG:
			return agentrpc.CodeTooLarge, errno.Error()
		}
		return agentrpc.CodeInternal, errno.Error()
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return agentrpc.CodeNotFound, "no such file or directory"
	case errors.Is(err, fs.ErrExist):
		return agentrpc.CodeExists, "already exists"
	case errors.Is(err, fs.ErrPermission):
		return agentrpc.CodePermission, "permission denied"
	}
	return agentrpc.CodeInternal, err.Error()
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
