package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
	"testing"

	"octo/internal/agentrpc"
)

func TestFileErrCodes(t *testing.T) {
	tests := []struct {
		err  error
		want agentrpc.Code
	}{
		{&fs.PathError{Op: "open", Path: "a", Err: syscall.ENOENT}, agentrpc.CodeNotFound},
		{&fs.PathError{Op: "mkdir", Path: "a", Err: syscall.EEXIST}, agentrpc.CodeExists},
		{&fs.PathError{Op: "open", Path: "a", Err: syscall.EACCES}, agentrpc.CodePermission},
		{&fs.PathError{Op: "rename", Path: "a", Err: syscall.EPERM}, agentrpc.CodePermission},
		{&fs.PathError{Op: "open", Path: "a", Err: syscall.EROFS}, agentrpc.CodePermission},
		{&fs.PathError{Op: "open", Path: "a", Err: syscall.ENOTDIR}, agentrpc.CodeInvalid},
		{&fs.PathError{Op: "remove", Path: "a", Err: syscall.ENOTEMPTY}, agentrpc.CodeInvalid},
		{&fs.PathError{Op: "write", Path: "a", Err: syscall.ENOSPC}, agentrpc.CodeNoSpace},
		{&fs.PathError{Op: "write", Path: "a", Err: syscall.EDQUOT}, agentrpc.CodeNoSpace},
		{&fs.PathError{Op: "write", Path: "a", Err: syscall.EFBIG}, agentrpc.CodeTooLarge},
		{&fs.PathError{Op: "read", Path: "a", Err: syscall.EIO}, agentrpc.CodeInternal},
		{&fs.PathError{Op: "openat", Path: "../a", Err: errors.New("path escapes from parent")}, agentrpc.CodeOutsideWorkspace},
		{fmt.Errorf("wrapped: %w", fs.ErrNotExist), agentrpc.CodeNotFound},
		{errors.New("something else"), agentrpc.CodeInternal},
		{agentrpc.ErrTooLarge, agentrpc.CodeTooLarge},
	}
	for _, tt := range tests {
		err := fileErr("op", "rel/path", tt.err)
		if got := agentrpc.CodeOf(err); got != tt.want {
			t.Errorf("fileErr(%v) code = %q, want %q", tt.err, got, tt.want)
		}
		// The code survives the wire.
		if got := agentrpc.CodeOf(agentrpc.Decode(agentrpc.Encode(err))); got != tt.want {
			t.Errorf("fileErr(%v) after Encode/Decode: code %q, want %q", tt.err, got, tt.want)
		}
	}
	if got := fileErr("read", "", syscall.ENOENT).Error(); got != "read .: no such file or directory" {
		t.Errorf("message = %q, want the relative path named", got)
	}
}
