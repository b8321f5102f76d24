package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"octo/internal/agentrpc"
	"octo/internal/backend"
)

// statusOf maps agent error codes to HTTP statuses.
var statusOf = map[agentrpc.Code]int{
	agentrpc.CodeNotFound:         http.StatusNotFound,
	agentrpc.CodeExists:           http.StatusConflict,
	agentrpc.CodePermission:       http.StatusForbidden,
	agentrpc.CodeOutsideWorkspace: http.StatusForbidden,
	agentrpc.CodeInvalid:          http.StatusBadRequest,
	agentrpc.CodeTooLarge:         http.StatusRequestEntityTooLarge,
	agentrpc.CodeLimit:            http.StatusTooManyRequests,
	agentrpc.CodeInternal:         http.StatusInternalServerError,
	agentrpc.CodePrecondition:     http.StatusPreconditionFailed,
	agentrpc.CodeNoSpace:          http.StatusInsufficientStorage,
}

// backendStatus maps the backend's failures to reach an agent to HTTP statuses.
var backendStatus = map[string]int{
	backend.CodeUnavailable: http.StatusServiceUnavailable,
	backend.CodeTimeout:     http.StatusGatewayTimeout,
	backend.CodeFailed:      http.StatusBadGateway,
}

type errorJSON struct {
	Error errorBody `json:"error"`
}

type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, errorJSON{errorBody{code, msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"encode response"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// agentError reports a failed agent call with the status its code maps to.
func (s *Server) agentError(w http.ResponseWriter, r *http.Request, err error) {
	status, code, msg := classify(err)
	if status >= 500 {
		s.log.Warn("agent call failed", "path", r.URL.Path, "status", status, "err", err)
	}
	writeError(w, status, code, msg)
}

func classify(err error) (status int, code, msg string) {
	var be *backend.Error
	var ae *agentrpc.Error
	switch {
	case errors.As(err, &be):
		if st, ok := backendStatus[be.Code]; ok {
			return st, be.Code, be.Error()
		}
		return http.StatusBadGateway, be.Code, be.Error()
	case errors.As(err, &ae):
		if st, ok := statusOf[ae.Code]; ok {
			return st, string(ae.Code), ae.Message
		}
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, backend.CodeTimeout, "the agent did not answer in time"
	case errors.Is(err, context.Canceled):
		return 499, "canceled", "request canceled"
	case errors.Is(err, agentrpc.ErrConnLost):
		return http.StatusBadGateway, backend.CodeFailed, err.Error()
	}
	return http.StatusInternalServerError, "internal", err.Error()
}

// decodeJSON reads a JSON body into v, strictly: unknown fields, wrong
// types and trailing data are errors that name the field.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("trailing data after the JSON object")
	}
	if err == nil {
		return true
	}
	var (
		se  *json.SyntaxError
		te  *json.UnmarshalTypeError
		mbe *http.MaxBytesError
	)
	msg := err.Error()
	switch {
	case errors.As(err, &mbe):
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("JSON body over %d bytes", mbe.Limit))
		return false
	case errors.Is(err, io.EOF):
		msg = "empty body: send a JSON object"
	case errors.As(err, &se):
		msg = fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, se)
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "(body)"
		}
		msg = fmt.Sprintf("field %s: want %s, got JSON %s", field, te.Type, te.Value)
	case strings.HasPrefix(msg, "json: unknown field "):
		msg = "unknown field " + strings.TrimPrefix(msg, "json: unknown field ")
	case errors.Is(err, io.ErrUnexpectedEOF):
		msg = "malformed JSON: unexpected end of body"
	}
	writeError(w, http.StatusBadRequest, "invalid", msg)
	return false
}

// boolParam parses a 1/0/true/false query parameter.
func boolParam(w http.ResponseWriter, r *http.Request, name string) (bool, bool) {
	switch v := queryValue(r, name); v {
	case "", "0", "false", "no":
		return false, true
	case "1", "true", "yes":
		return true, true
	default:
		writeError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("parameter %s: %q is not 1 or 0", name, v))
		return false, false
	}
}
