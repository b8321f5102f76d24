package agentrpc

import (
	"errors"
	"strings"
)

// Code is a stable, machine-readable failure class. Codes cross the net/rpc
// boundary as text and are mapped back to the sentinel errors below.
type Code string

// The error codes of the agent protocol.
const (
	CodeNotFound         Code = "not_found"
	CodeExists           Code = "exists"
	CodePermission       Code = "permission"
	CodeInvalid          Code = "invalid"
	CodeOutsideWorkspace Code = "outside_workspace"
	CodeTooLarge         Code = "too_large"
	CodeLimit            Code = "limit"
	CodeInternal         Code = "internal"
	CodePrecondition     Code = "precondition_failed"  // an If-Match the file no longer matches
	CodeNoSpace          Code = "insufficient_storage" // disk full or quota reached
)

// Sentinel errors, one per code. Errors returned by Client match them with errors.Is.
var (
	ErrNotFound         = &Error{Code: CodeNotFound, Message: "not found"}
	ErrExists           = &Error{Code: CodeExists, Message: "already exists"}
	ErrPermission       = &Error{Code: CodePermission, Message: "permission denied"}
	ErrInvalid          = &Error{Code: CodeInvalid, Message: "invalid request"}
	ErrOutsideWorkspace = &Error{Code: CodeOutsideWorkspace, Message: "path is outside the workspace"}
	ErrTooLarge         = &Error{Code: CodeTooLarge, Message: "too large"}
	ErrLimit            = &Error{Code: CodeLimit, Message: "limit reached"}
	ErrInternal         = &Error{Code: CodeInternal, Message: "internal error"}
	ErrPrecondition     = &Error{Code: CodePrecondition, Message: "precondition failed"}
	ErrNoSpace          = &Error{Code: CodeNoSpace, Message: "no space left"}
)

var codes = map[Code]bool{
	CodeNotFound: true, CodeExists: true, CodePermission: true, CodeInvalid: true,
	CodeOutsideWorkspace: true, CodeTooLarge: true, CodeLimit: true, CodeInternal: true,
	CodePrecondition: true, CodeNoSpace: true,
}

// Error is a protocol error: a code and a human-readable message.
type Error struct {
	Code    Code
	Message string
}

// wirePrefix marks error strings that carry a code across net/rpc.
const wirePrefix = "octo-agent:"

func (e *Error) Error() string { return e.Message }

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, ErrNotFound) holds for every not_found error.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Errorf returns an *Error with the given code and message.
func Errorf(code Code, msg string) *Error { return &Error{Code: code, Message: msg} }

// CodeOf returns the code of err: its own if it is (or wraps) an *Error,
// CodeInternal otherwise. A nil error has no code.
func CodeOf(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// Encode turns err into the text a net/rpc method returns, keeping its code.
// The agent's server calls it on every error it sends.
func Encode(err error) error {
	if err == nil {
		return nil
	}
	return errors.New(wirePrefix + string(CodeOf(err)) + ":" + err.Error())
}

// Decode maps an error string received over net/rpc back to an *Error.
// Strings without a code (transport errors) are returned unchanged.
func Decode(err error) error {
	if err == nil {
		return nil
	}
	rest, ok := strings.CutPrefix(err.Error(), wirePrefix)
	if !ok {
		return err
	}
	code, msg, ok := strings.Cut(rest, ":")
	if !ok || !codes[Code(code)] {
		return err
	}
	return &Error{Code: Code(code), Message: msg}
}
