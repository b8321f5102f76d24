package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"octo/internal/agentrpc"
	"octo/internal/backend"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{agentrpc.Errorf(agentrpc.CodeNotFound, "session x not found"), 404, "not_found"},
		{agentrpc.Errorf(agentrpc.CodeExists, "x exists"), 409, "exists"},
		{agentrpc.Errorf(agentrpc.CodeOutsideWorkspace, "out"), 403, "outside_workspace"},
		{agentrpc.Errorf(agentrpc.CodePermission, "denied"), 403, "permission"},
		{agentrpc.Errorf(agentrpc.CodeInvalid, "bad"), 400, "invalid"},
		{agentrpc.Errorf(agentrpc.CodeTooLarge, "big"), 413, "too_large"},
		{agentrpc.Errorf(agentrpc.CodeLimit, "many"), 429, "limit"},
		{agentrpc.Errorf(agentrpc.CodeInternal, "oops"), 500, "internal"},
		// as they come off the wire
		{agentrpc.Decode(agentrpc.Encode(fmt.Errorf("start: %w", agentrpc.ErrLimit))), 429, "limit"},
		{&backend.Error{Code: backend.CodeUnavailable, Message: "no agent"}, 503, "agent_unavailable"},
		{&backend.Error{Code: backend.CodeTimeout, Message: "slow"}, 504, "agent_timeout"},
		{&backend.Error{Code: backend.CodeFailed, Message: "died"}, 502, "agent_failed"},
		{fmt.Errorf("call: %w", context.DeadlineExceeded), 504, "agent_timeout"},
		{errors.New("something else"), 500, "internal"},
	} {
		status, code, _ := classify(tc.err)
		if status != tc.status || code != tc.code {
			t.Errorf("classify(%v) = %d %s, want %d %s", tc.err, status, code, tc.status, tc.code)
		}
	}
}

func TestDecodeJSONNamesTheField(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`{"command":["a"],"rows":-1}`, "field rows"},
		{`{"command":[1]}`, "field command"},
		{`{"env":{"A":1}}`, "field env"},
		{`[1]`, "want api.startJSON"},
		{`{"command":["a"],}`, "malformed JSON at byte"},
		{strings.Repeat(" ", maxJSONBody+1), "over"},
	} {
		rec := httptest.NewRecorder()
		var v startJSON
		ok := decodeJSON(rec, httptest.NewRequest("POST", "/", strings.NewReader(tc.body)), &v)
		body, _ := io.ReadAll(rec.Body)
		if ok || rec.Code/100 != 4 || !strings.Contains(string(body), tc.want) {
			t.Errorf("decode %.40q: ok=%v %d %s; want a 4xx mentioning %q", tc.body, ok, rec.Code, body, tc.want)
		}
	}
}
