package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"octo/internal/client"
)

// SSE carries output bytes exactly: a character split across chunks is
// held back until it is whole, invalid UTF-8 comes as data_b64, next -
// offset is always the bytes carried, and a reconnect after the end gets
// 204.
func TestSSEExactBytes(t *testing.T) {
	h := newHarness(t)
	s := h.startSession(h.tokMe, `{"command":["sh","-c","printf 'a\\342\\202'; sleep 0.3; printf '\\254b'; sleep 0.3; printf '\\377x\\342'"]}`)
	want := "a\xe2\x82\xacb\xffx\xe2"
	events := h.sse(t, s.ID, "")
	var got []byte
	var texts []string
	var end int64
	for _, e := range events {
		if e.event != "output" {
			continue
		}
		ev := decode[outputEventJSON](t, []byte(e.data))
		data := []byte(ev.Data)
		if ev.DataB64 != "" {
			b, err := base64.StdEncoding.DecodeString(ev.DataB64)
			if err != nil || ev.Data != "" {
				t.Fatalf("event %s: bad data_b64 or both fields", e.data)
			}
			data = b
		} else {
			texts = append(texts, ev.Data)
		}
		if ev.Offset != int64(len(got)) || ev.Next-ev.Offset != int64(len(data)) || e.id != strconv.FormatInt(ev.Next, 10) {
			t.Errorf("event %s (id %s) carries %d bytes after %d received", e.data, e.id, len(data), len(got))
		}
		got = append(got, data...)
		end = ev.Next
	}
	if string(got) != want {
		t.Errorf("SSE reconstructs %q, want %q", got, want)
	}
	if strings.Join(texts, "|") != "a|€b" {
		t.Errorf("text events %q, want \"a\" and \"€b\" (the split character held back until whole)", texts)
	}
	if last := events[len(events)-1]; last.event != "end" || last.id != strconv.FormatInt(end, 10) {
		t.Errorf("last event %+v, want end with id %d", last, end)
	}
	resp, body := h.do("GET", "/api/v1/sessions/"+s.ID+"/output", h.tokMe, nil, "Accept", "text/event-stream", "Last-Event-ID", strconv.FormatInt(end, 10))
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("reconnect after the end: %d %q, want 204", resp.StatusCode, body)
	}
}

// A raw follow reader slower than the session's output gets a contiguous
// prefix: the stream ends at the gap, its bytes are exactly the output
// from Octo-Output-Offset to the Octo-Next-Offset trailer, and
// Octo-Output-Resume says where kept output resumes.
func TestRawFollowSlowReader(t *testing.T) {
	h := newHarness(t)
	const lines = 3_000_000 // about 21 MB, well past the agent's 8 MiB window
	s := h.startSession(h.tokMe, fmt.Sprintf(`{"command":["seq","%d"]}`, lines))
	req, _ := http.NewRequest("GET", h.url+"/api/v1/sessions/"+s.ID+"/output?follow=1", nil)
	req.Header.Set("Authorization", "Bearer "+h.tokMe)
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	buf := make([]byte, 16<<10)
	for {
		n, err := resp.Body.Read(buf)
		body.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond) // about 3 MB/s at most: seq is much faster
	}
	var all bytes.Buffer
	for i := 1; i <= lines; i++ {
		all.WriteString(strconv.Itoa(i))
		all.WriteByte('\n')
	}
	start, _ := strconv.ParseInt(resp.Header.Get(hdrOffset), 10, 64)
	next, err := strconv.ParseInt(resp.Trailer.Get(hdrNext), 10, 64)
	if err != nil || next != start+int64(body.Len()) {
		t.Fatalf("stream from %d carried %d bytes, trailer next %q", start, body.Len(), resp.Trailer.Get(hdrNext))
	}
	if !bytes.Equal(body.Bytes(), all.Bytes()[start:next]) {
		t.Errorf("the stream's %d bytes from %d are not the output there: a hole or altered bytes", body.Len(), start)
	}
	resume := resp.Trailer.Get(hdrResume)
	if resp.Trailer.Get(hdrDone) == "true" {
		t.Skipf("the reader kept up with the session (%d bytes): no gap to test on this machine", body.Len())
	}
	if r, err := strconv.ParseInt(resume, 10, 64); err != nil || r <= next {
		t.Errorf("stream ended at %d, not done, with %s %q; want where kept output resumes, past %d", next, hdrResume, resume, next)
	}
}

// Attach over TCP: 101, output from the offset asked for, input reaches
// the session, several attachments read at once, closing one leaves the
// session running, and the stream ends when the session does.
func TestAttach(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	c, err := client.NewURL(h.url, h.tokMe)
	if err != nil {
		t.Fatal(err)
	}
	s := h.startSession(h.tokMe, `{"command":["sh","-c","echo ready; while read l; do echo \"got $l\"; [ \"$l\" = bye ] && exit 3; done"]}`)
	a1, err := c.Attach(ctx, s.ID, client.AttachOptions{Offset: 0, Stdin: true})
	if err != nil {
		t.Fatal(err)
	}
	a1.SetDeadline(time.Now().Add(20 * time.Second))
	if a1.Offset != 0 {
		t.Errorf("attachment from 0 starts at %d", a1.Offset)
	}
	readUntil(t, a1, "ready\n")
	a2, err := c.Attach(ctx, s.ID, client.AttachOptions{Offset: -1})
	if err != nil {
		t.Fatal(err)
	}
	a2.SetDeadline(time.Now().Add(20 * time.Second))
	if a2.Offset != 6 {
		t.Errorf("attachment from the current end starts at %d, want 6", a2.Offset)
	}
	a1.Write([]byte("one\n"))
	readUntil(t, a1, "got one\n")
	readUntil(t, a2, "got one\n")
	a1.Close() // detach
	time.Sleep(100 * time.Millisecond)
	if got := h.waitState(s.ID); got != "running" {
		t.Fatalf("after a detach the session is %s, want running", got)
	}
	h.do("POST", "/api/v1/sessions/"+s.ID+"/input", h.tokMe, strings.NewReader("bye\n"))
	readUntil(t, a2, "got bye\n")
	if rest, err := io.ReadAll(a2); err != nil || len(rest) != 0 {
		t.Errorf("after the session ended the attachment gave %q, %v; want EOF", rest, err)
	}
	if a2.Next() != 6+int64(len("got one\ngot bye\n")) {
		t.Errorf("attachment ended at %d", a2.Next())
	}

	_, err = c.Attach(ctx, "nosuch", client.AttachOptions{Offset: -1})
	if client.ErrorCode(err) != "not_found" {
		t.Errorf("attach to a missing session: %v, want not_found", err)
	}
	resp, body := h.do("POST", "/api/v1/sessions/"+s.ID+"/attach", h.tokMe, nil)
	want(t, "attach without upgrade", resp, body, http.StatusUpgradeRequired, "upgrade_required")
	_, err = c.As(h.other).Attach(ctx, s.ID, client.AttachOptions{Offset: -1})
	if client.ErrorCode(err) != "forbidden" {
		t.Errorf("attach for another user without admin: %v, want forbidden", err)
	}
}

func (h *harness) waitState(id string) string {
	_, b := h.do("GET", "/api/v1/sessions/"+id, h.tokMe, nil)
	return decode[sessionJSON](h.t, b).State
}

// readUntil reads from r until what it read ends with want.
func readUntil(t *testing.T, r io.Reader, want string) {
	t.Helper()
	var got []byte
	b := make([]byte, 1)
	for !bytes.HasSuffix(got, []byte(want)) {
		if _, err := r.Read(b); err != nil {
			t.Fatalf("read %q, then %v; want %q", got, err, want)
		}
		got = append(got, b[0])
	}
}

// POST /api/v1/sessions with Upgrade: tcp starts and attaches in one
// request, from the first byte even when the session ends at once; a
// program that cannot start is answered 201 with the failed session.
func TestStartAttached(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	c, err := client.NewURL(h.url, h.tokMe)
	if err != nil {
		t.Fatal(err)
	}
	id, a, _, err := c.StartAttached(ctx, client.StartRequest{Command: []string{"sh", "-c", "echo first; exit 2"}}, client.AttachOptions{CloseStdin: true})
	if err != nil || a == nil {
		t.Fatalf("start attached: %v, %v", a, err)
	}
	a.SetDeadline(time.Now().Add(20 * time.Second))
	if out, err := io.ReadAll(a); string(out) != "first\n" || err != nil || a.Offset != 0 {
		t.Errorf("start attached: output %q from %d, %v; want \"first\\n\" from 0", out, a.Offset, err)
	}
	if s, err := c.Session(ctx, id); err != nil || s.ExitStatus() != 2 {
		t.Errorf("session %s: %+v, %v; want exit 2", id, s, err)
	}
	_, a, s, err := c.StartAttached(ctx, client.StartRequest{Command: []string{"no-such-program"}}, client.AttachOptions{})
	if err != nil || a != nil || s == nil || s.State != "failed" {
		t.Errorf("start attached of a missing program: %v, %+v, %v; want the failed session", a, s, err)
	}
}

// Attach works over TLS: the upgrade hijacks the TLS connection.
func TestAttachTLS(t *testing.T) {
	h := newHarness(t)
	ts := httptest.NewUnstartedServer(h.srv.Handler())
	ts.StartTLS()
	t.Cleanup(ts.Close)
	pool := x509.NewCertPool()
	pool.AddCert(ts.Certificate())
	c, err := client.NewURLTLS(ts.URL, h.tokMe, &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	id, a, _, err := c.StartAttached(ctx, client.StartRequest{Command: []string{"sh", "-c", "read l; echo \"tls $l\""}}, client.AttachOptions{Stdin: true, CloseStdin: true})
	if err != nil || a == nil {
		t.Fatalf("start attached over TLS: %v, %v", a, err)
	}
	a.SetDeadline(time.Now().Add(20 * time.Second))
	a.Write([]byte("ok\n"))
	a.CloseWrite()
	if out, err := io.ReadAll(a); string(out) != "tls ok\n" || err != nil {
		t.Errorf("over TLS: %q, %v; want \"tls ok\\n\"", out, err)
	}
	if s, err := c.Session(ctx, id); err != nil || s.ExitStatus() != 0 {
		t.Errorf("session over TLS: %+v, %v", s, err)
	}
}

// client.CopyOutput of output larger than the agent keeps, read at once and
// followed by a slow writer: every byte written is the output at its
// offset, and each stretch skipped is reported as a gap where it happened.
func TestCopyOutputGaps(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	c, err := client.NewURL(h.url, h.tokMe)
	if err != nil {
		t.Fatal(err)
	}
	const lines = 3_000_000
	var all bytes.Buffer
	for i := 1; i <= lines; i++ {
		all.WriteString(strconv.Itoa(i))
		all.WriteByte('\n')
	}
	for _, follow := range []bool{true, false} {
		s := h.startSession(h.tokMe, fmt.Sprintf(`{"command":["seq","%d"]}`, lines))
		if !follow {
			h.waitExit(h.tokMe, s.ID)
		}
		w := &offsetChecker{t: t, all: all.Bytes(), slow: follow}
		next, err := c.CopyOutput(ctx, s.ID, 0, w, follow, w.gap)
		if err != nil || next != int64(all.Len()) || w.pos != next {
			t.Errorf("follow %v: CopyOutput ended at %d (checked to %d), %v; want %d", follow, next, w.pos, err, all.Len())
		}
		if w.gaps == 0 {
			t.Errorf("follow %v: no gap reported, but the agent keeps only 8 MiB of %d bytes", follow, all.Len())
		}
	}
}

// offsetChecker checks that what is written is the output at the offset
// reached, moved on by the gaps reported.
type offsetChecker struct {
	t    *testing.T
	all  []byte
	pos  int64
	gaps int
	slow bool
}

func (w *offsetChecker) Write(p []byte) (int, error) {
	if !bytes.Equal(p, w.all[w.pos:w.pos+int64(len(p))]) {
		w.t.Fatalf("%d bytes written at %d are not the output there", len(p), w.pos)
	}
	w.pos += int64(len(p))
	if w.slow {
		time.Sleep(time.Duration(len(p)/(16<<10)) * 5 * time.Millisecond)
	}
	return len(p), nil
}

func (w *offsetChecker) gap(g client.Gap) {
	if g.From != w.pos || g.To <= g.From {
		w.t.Errorf("gap %+v reported at %d", g, w.pos)
	}
	w.pos = g.To
	w.gaps++
}

// Attachments count against the user's output streams: past the cap the
// answer is 429, and a detach frees its place.
func TestAttachStreamCap(t *testing.T) {
	h := newHarness(t) // max 2 streams per user
	ctx := context.Background()
	c, err := client.NewURL(h.url, h.tokMe)
	if err != nil {
		t.Fatal(err)
	}
	s := h.startSession(h.tokMe, `{"command":["sleep","100"]}`)
	defer h.do("DELETE", "/api/v1/sessions/"+s.ID+"?grace=0s", h.tokMe, nil)
	var held []*client.Attachment
	for range 2 {
		a, err := c.Attach(ctx, s.ID, client.AttachOptions{Offset: -1})
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, a)
	}
	if _, err := c.Attach(ctx, s.ID, client.AttachOptions{Offset: -1}); client.ErrorCode(err) != "limit" {
		t.Errorf("third attachment: %v, want limit", err)
	}
	held[0].Close()
	var err2 error
	for i := 0; i < 100; i++ { // the server notices the detach when it reads the close
		var a *client.Attachment
		if a, err2 = c.Attach(ctx, s.ID, client.AttachOptions{Offset: -1}); err2 == nil {
			a.Close()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err2 != nil {
		t.Errorf("attach after a detach: %v", err2)
	}
	held[1].Close()
}

// An SSE reader slower than the session's output gets a gap event where
// output was dropped, and every output event is the output at its offsets.
func TestSSEGap(t *testing.T) {
	h := newHarness(t)
	const lines = 3_000_000
	var all bytes.Buffer
	for i := 1; i <= lines; i++ {
		all.WriteString(strconv.Itoa(i))
		all.WriteByte('\n')
	}
	s := h.startSession(h.tokMe, fmt.Sprintf(`{"command":["seq","%d"]}`, lines))
	req, _ := http.NewRequest("GET", h.url+"/api/v1/sessions/"+s.ID+"/output", nil)
	req.Header.Set("Authorization", "Bearer "+h.tokMe)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 4<<20), 4<<20)
	var pos int64
	gaps, ended := 0, false
	var event string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = line[7:]
		case strings.HasPrefix(line, "data: ") && event == "gap":
			g := decode[gapEventJSON](t, []byte(line[6:]))
			if g.From != pos || g.To <= g.From {
				t.Fatalf("gap %+v at %d", g, pos)
			}
			pos, gaps = g.To, gaps+1
		case strings.HasPrefix(line, "data: ") && event == "output":
			ev := decode[outputEventJSON](t, []byte(line[6:]))
			if ev.Offset != pos || ev.DataB64 != "" || ev.Data != all.String()[ev.Offset:ev.Next] {
				t.Fatalf("event from %d to %d at %d is not the output there", ev.Offset, ev.Next, pos)
			}
			pos = ev.Next
			time.Sleep(5 * time.Millisecond) // read slowly: about 200 chunks a second
		case strings.HasPrefix(line, "data: ") && event == "end":
			ended = true
		}
	}
	if !ended || pos != int64(all.Len()) || gaps == 0 {
		t.Errorf("SSE ended %v at %d of %d with %d gaps; want the end, everything accounted for, and a gap", ended, pos, all.Len(), gaps)
	}
}
