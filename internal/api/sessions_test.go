package api

import (
	"strings"
	"testing"
)

// TestSessionStates: every route answers 404 for a session that does not
// exist (input with an empty body too), 409 not_running for one that has
// ended, and DELETE ?remove=1 removes a session for good.
func TestSessionStates(t *testing.T) {
	h := newHarness(t)
	tok := h.tokMe
	const missing = "/api/v1/sessions/0123456789abcdef"
	for _, tc := range []struct{ method, path, body string }{
		{"GET", missing, ""},
		{"DELETE", missing, ""},
		{"DELETE", missing + "?remove=1", ""},
		{"POST", missing + "/signal", `{"signal":"TERM"}`},
		{"POST", missing + "/resize", `{"rows":10,"cols":10}`},
		{"POST", missing + "/input", ""},
		{"POST", missing + "/input", "data"},
		{"POST", missing + "/input?eof=1", ""},
		{"GET", missing + "/output", ""},
		{"GET", missing + "/output?follow=1", ""},
	} {
		resp, b := h.do(tc.method, tc.path, tok, strings.NewReader(tc.body))
		want(t, tc.method+" "+tc.path+" "+tc.body, resp, b, 404, "not_found")
	}

	s := h.startSession(tok, `{"command":["sh","-c","exit 0"],"tty":true}`)
	h.waitExit(tok, s.ID)
	for _, tc := range []struct{ path, body string }{
		{"/signal", `{"signal":"TERM"}`},
		{"/resize", `{"rows":10,"cols":10}`},
		{"/input", "late"},
	} {
		resp, b := h.do("POST", "/api/v1/sessions/"+s.ID+tc.path, tok, strings.NewReader(tc.body))
		want(t, "ended session "+tc.path, resp, b, 409, "not_running")
	}

	run := h.startSession(tok, `{"command":["sleep","100"]}`)
	resp, b := h.do("DELETE", "/api/v1/sessions/"+run.ID+"?remove=maybe", tok, nil)
	want(t, "remove=maybe", resp, b, 400, "invalid")
	resp, b = h.do("DELETE", "/api/v1/sessions/"+run.ID+"?remove=1&grace=1s", tok, nil)
	if st := decode[sessionJSON](t, b); resp.StatusCode != 200 || st.ID != run.ID || st.State == "running" {
		t.Errorf("DELETE ?remove=1 of a running session: %d %s; want 200 with its last record", resp.StatusCode, b)
	}
	for _, path := range []string{"/api/v1/sessions/" + run.ID, "/api/v1/sessions/" + run.ID + "/output"} {
		resp, b = h.do("GET", path, tok, nil)
		want(t, "after remove: GET "+path, resp, b, 404, "not_found")
	}
	_, b = h.do("GET", "/api/v1/sessions", tok, nil)
	if strings.Contains(string(b), run.ID) {
		t.Errorf("list after remove still has %s: %s", run.ID, b)
	}
}
