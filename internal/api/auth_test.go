package api

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

func TestAuth(t *testing.T) {
	h := newHarness(t)
	revoked, tok, _ := h.store.Create(h.me, "old", false)
	if _, err := h.store.Revoke(tok.ID); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		method string
		path   string
		header []string
		status int
		code   string
	}{
		{"healthz needs no token", "GET", "/healthz", nil, 200, ""},
		{"no token", "GET", "/api/v1/status", nil, 401, "unauthorized"},
		{"not bearer", "GET", "/api/v1/status", []string{"Authorization", "Basic " + h.tokMe}, 401, "unauthorized"},
		{"wrong token", "GET", "/api/v1/status", []string{"Authorization", "Bearer octo_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, 401, "unauthorized"},
		{"revoked token", "GET", "/api/v1/status", []string{"Authorization", "Bearer " + revoked}, 401, "unauthorized"},
		{"no token, mutating", "POST", "/api/v1/sessions", nil, 401, "unauthorized"},
		{"good token", "GET", "/api/v1/status", []string{"Authorization", "Bearer " + h.tokMe}, 200, ""},
		{"lower-case scheme", "GET", "/api/v1/status", []string{"Authorization", "bearer " + h.tokMe}, 200, ""},
		{"user acting for another", "GET", "/api/v1/status?user=" + h.other, []string{"Authorization", "Bearer " + h.tokMe}, 403, "forbidden"},
		{"admin acting for another", "GET", "/api/v1/status?user=" + h.other, []string{"Authorization", "Bearer " + h.tokAdmin}, 200, ""},
		{"admin for a user not served", "GET", "/api/v1/status?user=root-no-such-user", []string{"Authorization", "Bearer " + h.tokAdmin}, 403, "user_not_served"},
		{"unknown route", "GET", "/api/v1/nope", []string{"Authorization", "Bearer " + h.tokMe}, 404, "not_found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := h.do(tc.method, tc.path, "", nil, tc.header...)
			want(t, tc.name, resp, body, tc.status, tc.code)
			if tc.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without WWW-Authenticate: Bearer (got %q)", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
	resp, body := h.do("GET", "/api/v1/status?user="+h.other, h.tokAdmin, nil)
	st := decode[statusJSON](t, body)
	if resp.StatusCode != 200 || st.User != h.other || st.Agent.User != h.other || !st.Caller.Admin || st.Caller.User != h.me {
		t.Errorf("admin status for %s = %+v, want the other user's agent", h.other, st)
	}
	if got := h.log.String(); !strings.Contains(got, "method=POST path=/api/v1/sessions status=401") {
		t.Errorf("no log line for the refused POST; log:\n%s", got)
	}
}

// On the Unix socket the kernel says who calls: no token needed.
func TestUnixSocketIdentity(t *testing.T) {
	h := newHarness(t)
	resp, err := h.unix.Get("http://octo/api/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status over the socket: %d %s", resp.StatusCode, body)
	}
	st := decode[statusJSON](t, body)
	wantAdmin := os.Getuid() == 0
	if st.Caller.User != h.me || st.Caller.Admin != wantAdmin || !strings.HasPrefix(st.Caller.Via, "socket uid ") || st.Placement != "system" {
		t.Errorf("socket caller = %+v placement %s, want %s (admin %v) via socket, placement system", st.Caller, st.Placement, h.me, wantAdmin)
	}
	resp, err = h.unix.Get("http://octo/api/v1/status?user=" + h.other)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if want := map[bool]int{true: 200, false: 403}[wantAdmin]; resp.StatusCode != want {
		t.Errorf("?user= over the socket as uid %d: status %d, want %d", os.Getuid(), resp.StatusCode, want)
	}
}

// Handlers refuse requests that reach them without an identity.
func TestHandlersNeedIdentity(t *testing.T) {
	h := newHarness(t)
	for _, path := range []string{"/api/v1/status", "/api/v1/sessions", "/api/v1/files/x"} {
		rec := httptest.NewRecorder()
		h.srv.route(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("%s without identity: %d, want 401", path, rec.Code)
		}
	}
	// An injected identity is used as is.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/api/v1/status", nil)
	h.srv.route(rec, req.WithContext(withIdentity(context.Background(), Identity{Name: h.other, Via: "test"})))
	if st := decode[statusJSON](t, rec.Body.Bytes()); rec.Code != 200 || st.Agent.User != h.other {
		t.Errorf("injected identity %s: %d %s", h.other, rec.Code, rec.Body)
	}
}

// A successful mutating request logs exactly one line with user, method,
// path and status; a GET logs none.
func TestRequestLog(t *testing.T) {
	h := newHarness(t)
	requestLines := func(from int) []string {
		var lines []string
		for _, l := range strings.Split(h.log.String()[from:], "\n") {
			if strings.Contains(l, "msg=request") {
				lines = append(lines, l)
			}
		}
		return lines
	}
	from := len(h.log.String())
	resp, b := h.do("PUT", "/api/v1/files/logged.txt", h.tokMe, strings.NewReader("x"))
	want(t, "PUT", resp, b, 201, "")
	lines := requestLines(from)
	wantLine := "user=" + h.me + " as=" + h.me + " method=PUT path=/api/v1/files/logged.txt status=201"
	if len(lines) != 1 || !strings.Contains(lines[0], wantLine) {
		t.Errorf("log lines for a PUT: %q, want one containing %q", lines, wantLine)
	}
	from = len(h.log.String())
	resp, b = h.do("GET", "/api/v1/files/logged.txt", h.tokMe, nil)
	want(t, "GET", resp, b, 200, "")
	resp, b = h.do("GET", "/api/v1/status", h.tokMe, nil)
	want(t, "GET status", resp, b, 200, "")
	if lines := requestLines(from); len(lines) != 0 {
		t.Errorf("log lines for GETs: %q, want none", lines)
	}
}
