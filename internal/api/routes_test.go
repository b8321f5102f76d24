package api

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func (h *harness) startSession(tok, body string) sessionJSON {
	h.t.Helper()
	resp, b := h.do("POST", "/api/v1/sessions", tok, strings.NewReader(body))
	if resp.StatusCode != 201 {
		h.t.Fatalf("start %s: %d %s", body, resp.StatusCode, b)
	}
	return decode[sessionJSON](h.t, b)
}

// waitExit polls a session until it is no longer running.
func (h *harness) waitExit(tok, id string) sessionJSON {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, b := h.do("GET", "/api/v1/sessions/"+id, tok, nil)
		s := decode[sessionJSON](h.t, b)
		if s.State != "running" || time.Now().After(deadline) {
			return s
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestIsolation(t *testing.T) {
	h := newHarness(t)
	os.WriteFile(filepath.Join(h.wsMe, "secret.txt"), []byte("mine"), 0o600)
	mine := h.startSession(h.tokMe, `{"command":["sleep","30"]}`)
	t.Cleanup(func() { h.do("DELETE", "/api/v1/sessions/"+mine.ID+"?grace=0s", h.tokMe, nil) })

	for _, tc := range []struct {
		method, path, body string
		status             int
	}{
		{"GET", "/api/v1/sessions/" + mine.ID, "", 404},
		{"GET", "/api/v1/sessions/" + mine.ID + "/output", "", 404},
		{"DELETE", "/api/v1/sessions/" + mine.ID, "", 404},
		{"POST", "/api/v1/sessions/" + mine.ID + "/signal", `{"signal":"KILL"}`, 404},
		{"POST", "/api/v1/sessions/" + mine.ID + "/input?eof=1", "x", 404},
		{"GET", "/api/v1/files/secret.txt", "", 404},
		{"GET", "/api/v1/files/" + h.wsMe + "/secret.txt", "", 403}, // absolute: outside_workspace
		{"GET", "/api/v1/files/..%2F" + filepath.Base(h.wsMe) + "%2Fsecret.txt", "", 403},
		{"DELETE", "/api/v1/files/secret.txt", "", 404},
	} {
		resp, b := h.do(tc.method, tc.path, h.tokOther, strings.NewReader(tc.body))
		want(t, fmt.Sprintf("%s as %s: %s %s", h.other, h.other, tc.method, tc.path), resp, b, tc.status, "")
	}
	_, b := h.do("GET", "/api/v1/sessions", h.tokOther, nil)
	if strings.Contains(string(b), mine.ID) {
		t.Errorf("%s's session list shows %s's session: %s", h.other, h.me, b)
	}
	// The other user's write lands in their workspace only.
	resp, b := h.do("PUT", "/api/v1/files/theirs.txt", h.tokOther, strings.NewReader("theirs"))
	want(t, "PUT as other", resp, b, 201, "")
	if _, err := os.Stat(filepath.Join(h.wsMe, "theirs.txt")); err == nil {
		t.Errorf("%s's upload appeared in %s's workspace", h.other, h.me)
	}
	if got, _ := os.ReadFile(filepath.Join(h.wsOther, "theirs.txt")); string(got) != "theirs" {
		t.Errorf("other workspace has %q, want theirs", got)
	}
	// Secret unharmed, session still running.
	if got, _ := os.ReadFile(filepath.Join(h.wsMe, "secret.txt")); string(got) != "mine" {
		t.Errorf("secret.txt = %q after the other user's attempts", got)
	}
	_, b = h.do("GET", "/api/v1/sessions/"+mine.ID, h.tokMe, nil)
	if s := decode[sessionJSON](t, b); s.State != "running" {
		t.Errorf("my session is %s after the other user's attempts, want running", s.State)
	}
	// An admin reaches the other user's files with ?user=.
	resp, b = h.do("GET", "/api/v1/files/theirs.txt?user="+h.other, h.tokAdmin, nil)
	if resp.StatusCode != 200 || string(b) != "theirs" {
		t.Errorf("admin ?user=%s GET: %d %q", h.other, resp.StatusCode, b)
	}
	resp, b = h.do("GET", "/api/v1/files/secret.txt?user="+h.me, h.tokOther, nil)
	want(t, "non-admin ?user=", resp, b, 403, "forbidden")
}

func TestSessionRoutes(t *testing.T) {
	h := newHarness(t)
	tok := h.tokMe

	// start, get, list
	s := h.startSession(tok, `{"command":["sh","-c","echo out; echo err >&2; exit 3"],"name":"demo","env":{"X":"1"}}`)
	if s.ID == "" || s.Name != "demo" || s.Command[0] != "sh" {
		t.Errorf("started session = %+v", s)
	}
	end := h.waitExit(tok, s.ID)
	if end.State != "exited" || end.ExitCode == nil || *end.ExitCode != 3 {
		t.Errorf("session ended as %+v, want exited with code 3", end)
	}
	_, b := h.do("GET", "/api/v1/sessions", tok, nil)
	if l := decode[sessionListJSON](t, b); len(l.Sessions) != 1 || l.Sessions[0].ID != s.ID {
		t.Errorf("list = %s, want the one session", b)
	}
	// output, once and from an offset
	resp, b := h.do("GET", "/api/v1/sessions/"+s.ID+"/output", tok, nil)
	if resp.StatusCode != 200 || string(b) != "out\nerr\n" || resp.Header.Get(hdrNext) != "8" || resp.Header.Get(hdrDone) != "true" {
		t.Errorf("output: %d %q next=%s done=%s", resp.StatusCode, b, resp.Header.Get(hdrNext), resp.Header.Get(hdrDone))
	}
	resp, b = h.do("GET", "/api/v1/sessions/"+s.ID+"/output?offset=4", tok, nil)
	if string(b) != "err\n" || resp.Header.Get(hdrOffset) != "4" {
		t.Errorf("output?offset=4: %q offset=%s", b, resp.Header.Get(hdrOffset))
	}

	// input with eof, to cat
	c := h.startSession(tok, `{"command":["cat"]}`)
	resp, b = h.do("POST", "/api/v1/sessions/"+c.ID+"/input", tok, strings.NewReader("hello "))
	want(t, "input", resp, b, 204, "")
	resp, b = h.do("POST", "/api/v1/sessions/"+c.ID+"/input?eof=1", tok, strings.NewReader("world"))
	want(t, "input eof", resp, b, 204, "")
	if e := h.waitExit(tok, c.ID); e.State != "exited" || e.ExitCode == nil || *e.ExitCode != 0 {
		t.Errorf("cat after eof: %+v, want exited with exit_code 0", e)
	}
	_, b = h.do("GET", "/api/v1/sessions/"+c.ID+"/output", tok, nil)
	if string(b) != "hello world" {
		t.Errorf("cat output %q, want %q", b, "hello world")
	}

	// signal, resize (tty), stop
	tty := h.startSession(tok, `{"command":["sleep","30"],"tty":true,"rows":10,"cols":20}`)
	resp, b = h.do("POST", "/api/v1/sessions/"+tty.ID+"/resize", tok, strings.NewReader(`{"rows":30,"cols":100}`))
	want(t, "resize", resp, b, 204, "")
	resp, b = h.do("POST", "/api/v1/sessions/"+tty.ID+"/signal", tok, strings.NewReader(`{"signal":"TERM"}`))
	want(t, "signal", resp, b, 204, "")
	if e := h.waitExit(tok, tty.ID); e.Signal != "TERM" || e.ExitCode != nil {
		t.Errorf("after signal TERM: %+v", e)
	}
	long := h.startSession(tok, `{"command":["sleep","30"]}`)
	resp, b = h.do("DELETE", "/api/v1/sessions/"+long.ID+"?grace=1s", tok, nil)
	if st := decode[sessionJSON](t, b); resp.StatusCode != 200 || st.State == "running" {
		t.Errorf("stop: %d %s", resp.StatusCode, b)
	}

	// mistakes
	for _, tc := range []struct {
		method, path, body string
		status             int
		msg                string
	}{
		{"POST", "/api/v1/sessions", `{"command":"ls"}`, 400, "field command"},
		{"POST", "/api/v1/sessions", `{"command":[]}`, 400, "field command"},
		{"POST", "/api/v1/sessions", `{"command":["ls"],"tty":"yes"}`, 400, "field tty"},
		{"POST", "/api/v1/sessions", `{"command":["ls"],"colour":1}`, 400, "unknown field"},
		{"POST", "/api/v1/sessions", `{"command":["ls"]`, 400, "malformed JSON"},
		{"POST", "/api/v1/sessions", ``, 400, "empty body"},
		{"POST", "/api/v1/sessions", `{"command":["ls"]} {}`, 400, "trailing data"},
		{"POST", "/api/v1/sessions", `{"command":["ls"],"cwd":"../.."}`, 403, ""},
		{"POST", "/api/v1/sessions", `{"command":["/no/such/program"]}`, 0, ""},
		{"GET", "/api/v1/sessions/nope", "", 404, ""},
		{"DELETE", "/api/v1/sessions/" + long.ID + "?grace=soon", "", 400, "parameter grace"},
		{"DELETE", "/api/v1/sessions/" + long.ID + "?grace=6m", "", 400, "is not a duration between 0s and 5m0s"},
		{"DELETE", "/api/v1/sessions/" + long.ID + "?grace=-1s", "", 400, "parameter grace"},
		{"POST", "/api/v1/sessions/" + long.ID + "/signal", `{"signal":""}`, 400, "field signal"},
		{"POST", "/api/v1/sessions/" + s.ID + "/signal", `{"signal":"NOPE"}`, 400, ""},
		{"POST", "/api/v1/sessions/" + long.ID + "/resize", `{"rows":0,"cols":0}`, 400, "rows and cols"},
		{"POST", "/api/v1/sessions/" + long.ID + "/input?eof=maybe", "", 400, "parameter eof"},
		{"GET", "/api/v1/sessions/" + s.ID + "/output?offset=-1", "", 400, "parameter offset"},
	} {
		resp, b := h.do(tc.method, tc.path, tok, strings.NewReader(tc.body))
		if tc.status == 0 { // an agent-defined outcome: either a 201 failed session or a 4xx, never 5xx
			if resp.StatusCode >= 500 {
				t.Errorf("%s %s %s: %d %s", tc.method, tc.path, tc.body, resp.StatusCode, b)
			}
			continue
		}
		if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.msg) {
			t.Errorf("%s %s %s: %d %s; want %d mentioning %q", tc.method, tc.path, tc.body, resp.StatusCode, b, tc.status, tc.msg)
		}
	}
}

func TestOutputFollow(t *testing.T) {
	h := newHarness(t)
	s := h.startSession(h.tokMe, `{"command":["sh","-c","echo one; sleep 0.3; echo two; sleep 0.3; echo three"]}`)

	// Raw follow: chunks arrive as written, trailer carries the next offset.
	req, _ := http.NewRequest("GET", h.url+"/api/v1/sessions/"+s.ID+"/output?follow=1", nil)
	req.Header.Set("Authorization", "Bearer "+h.tokMe)
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 4)
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "one\n" {
		t.Fatalf("first chunk %q, %v", first, err)
	}
	gotFirst := time.Now()
	rest, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// The session sleeps 0.6s after "one": a stream delivers it long before
	// the end, a buffered response at the end.
	if d := time.Since(gotFirst); d < 400*time.Millisecond {
		t.Errorf("first chunk came only %v before the end; it should be flushed as written", d)
	}
	if string(rest) != "two\nthree\n" || resp.Trailer.Get(hdrNext) != "14" || resp.Trailer.Get(hdrDone) != "true" {
		t.Errorf("rest %q trailer %v", rest, resp.Trailer)
	}

	// SSE from the start, then resumed with Last-Event-ID.
	events := h.sse(t, s.ID, "")
	var all strings.Builder
	for _, e := range events {
		if e.event == "output" {
			ev := decode[outputEventJSON](t, []byte(e.data))
			all.WriteString(ev.Data)
			if e.id != fmt.Sprint(ev.Next) {
				t.Errorf("event id %s, want next offset %d", e.id, ev.Next)
			}
		}
	}
	if all.String() != "one\ntwo\nthree\n" {
		t.Errorf("SSE output %q", all.String())
	}
	if last := events[len(events)-1]; last.event != "end" || !strings.Contains(last.data, `"state":"exited"`) {
		t.Errorf("last SSE event %+v, want end with the session", last)
	}
	resumed := h.sse(t, s.ID, "8")
	if len(resumed) < 1 || !strings.Contains(resumed[0].data, `"data":"three\n"`) {
		t.Errorf("SSE resumed at 8: %+v", resumed)
	}
}

type sseEvent struct{ id, event, data string }

func (h *harness) sse(t *testing.T, id, lastID string) []sseEvent {
	req, _ := http.NewRequest("GET", h.url+"/api/v1/sessions/"+id+"/output", nil)
	req.Header.Set("Authorization", "Bearer "+h.tokMe)
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("SSE content type %q", ct)
	}
	var out []sseEvent
	var cur sseEvent
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.event != "" {
				out = append(out, cur)
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, "id: "):
			cur.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			cur.event = line[7:]
		case strings.HasPrefix(line, "data: "):
			cur.data = line[6:]
		}
	}
	return out
}

func TestStreamCap(t *testing.T) {
	h := newHarness(t) // MaxStreamsPerUser: 2
	s := h.startSession(h.tokMe, `{"command":["sleep","30"]}`)
	t.Cleanup(func() { h.do("DELETE", "/api/v1/sessions/"+s.ID+"?grace=0s", h.tokMe, nil) })
	var bodies []io.Closer
	for range 2 {
		req, _ := http.NewRequest("GET", h.url+"/api/v1/sessions/"+s.ID+"/output?follow=1", nil)
		req.Header.Set("Authorization", "Bearer "+h.tokMe)
		resp, err := h.client.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("stream: %v %v", resp, err)
		}
		bodies = append(bodies, resp.Body)
	}
	resp, b := h.do("GET", "/api/v1/sessions/"+s.ID+"/output?follow=1", h.tokMe, nil)
	want(t, "third stream", resp, b, 429, "limit")
	resp, _ = h.do("GET", "/api/v1/sessions/"+s.ID+"/output", h.tokMe, nil)
	if resp.StatusCode != 200 {
		t.Errorf("a non-follow read is not a stream: %d", resp.StatusCode)
	}
	bodies[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		req, _ := http.NewRequest("GET", h.url+"/api/v1/sessions/"+s.ID+"/output?follow=1", nil)
		req.Header.Set("Authorization", "Bearer "+h.tokMe)
		resp, err := h.client.Do(req)
		if err == nil && resp.StatusCode == 200 {
			resp.Body.Close()
			break
		}
		if err == nil {
			resp.Body.Close()
		}
		if time.Now().After(deadline) {
			t.Fatal("a closed stream's slot was not released")
		}
		time.Sleep(50 * time.Millisecond)
	}
	bodies[1].Close()
}

// Resize changes the terminal size the session's process sees.
func TestResizeChangesTerminalSize(t *testing.T) {
	h := newHarness(t)
	tok := h.tokMe
	s := h.startSession(tok, `{"command":["sh","-c","stty size; read x; stty size"],"tty":true,"rows":10,"cols":20}`)
	t.Cleanup(func() { h.do("DELETE", "/api/v1/sessions/"+s.ID+"?grace=0s", tok, nil) })
	waitOutput := func(sub string) string {
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, b := h.do("GET", "/api/v1/sessions/"+s.ID+"/output", tok, nil)
			if strings.Contains(string(b), sub) || time.Now().After(deadline) {
				return string(b)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if out := waitOutput("10 20"); !strings.Contains(out, "10 20") {
		t.Fatalf("output before resize %q, want the start size 10 20", out)
	}
	resp, b := h.do("POST", "/api/v1/sessions/"+s.ID+"/resize", tok, strings.NewReader(`{"rows":33,"cols":111}`))
	want(t, "resize", resp, b, 204, "")
	resp, b = h.do("POST", "/api/v1/sessions/"+s.ID+"/input", tok, strings.NewReader("go\n"))
	want(t, "input", resp, b, 204, "")
	if out := waitOutput("33 111"); !strings.Contains(out, "33 111") {
		t.Errorf("output after resize to 33x111: %q, want stty size to print 33 111", out)
	}
}
