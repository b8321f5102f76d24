package client

import (
	"strings"
	"testing"
)

func TestExitStatus(t *testing.T) {
	code := func(n int) *int { return &n }
	for _, tc := range []struct {
		s    Session
		want int
	}{
		{Session{State: "exited", ExitCode: code(0)}, 0},
		{Session{State: "exited", ExitCode: code(7)}, 7},
		{Session{State: "exited", Signal: "TERM"}, 143},
		{Session{State: "exited", Signal: "KILL"}, 137},
		{Session{State: "failed"}, 255},
		{Session{State: "lost"}, 255},
	} {
		if got := tc.s.ExitStatus(); got != tc.want {
			t.Errorf("ExitStatus(%+v) = %d, want %d", tc.s, got, tc.want)
		}
	}
}

func TestErrorOf(t *testing.T) {
	for _, tc := range []struct {
		status   int
		body     string
		code     string
		contains string
	}{
		{404, `{"error":{"code":"not_found","message":"session \"x\" not found"}}`, "not_found", `session "x" not found`},
		{502, "bad gateway from a proxy", "http_502", "HTTP 502: bad gateway from a proxy"},
		{500, "", "http_500", "Internal Server Error"},
	} {
		err := errorOf(tc.status, strings.NewReader(tc.body))
		if ErrorCode(err) != tc.code || !strings.Contains(err.Error(), tc.contains) {
			t.Errorf("errorOf(%d, %q) = %v (code %q), want code %q and %q", tc.status, tc.body, err, ErrorCode(err), tc.code, tc.contains)
		}
	}
}

func TestURLs(t *testing.T) {
	c := NewUnix("/x.sock").As("alice")
	if got, want := c.url(filePath("a dir/b#c?.txt"), nil), "http://octo/api/v1/files/a%20dir/b%23c%3F.txt?user=alice"; got != want {
		t.Errorf("url = %s, want %s", got, want)
	}
	if got, want := c.url(sessionPath("a/b", "/output"), nil), "http://octo/api/v1/sessions/a%2Fb/output?user=alice"; got != want {
		t.Errorf("url = %s, want %s", got, want)
	}
	if _, err := NewURL("octo.example:3000", ""); err == nil {
		t.Error("NewURL without a scheme: no error")
	}
}

func TestFromEnv(t *testing.T) {
	t.Setenv("OCTO_URL", "")
	t.Setenv("OCTO_SOCKET", "")
	c, _ := FromEnv()
	if c.where != DefaultSocket {
		t.Errorf("default: %s, want %s", c.where, DefaultSocket)
	}
	t.Setenv("OCTO_SOCKET", "/tmp/o.sock")
	if c, _ = FromEnv(); c.where != "/tmp/o.sock" {
		t.Errorf("$OCTO_SOCKET: %s", c.where)
	}
	t.Setenv("OCTO_URL", "https://octo.example:3000/")
	t.Setenv("OCTO_TOKEN", "octo_x")
	if c, _ = FromEnv(); c.where != "https://octo.example:3000" || c.token != "octo_x" {
		t.Errorf("$OCTO_URL wins: %s, token %q", c.where, c.token)
	}
}
