package api

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// onlyReader hides a reader's length, so the request goes out chunked.
type onlyReader struct{ io.Reader }

func TestBodyLimits(t *testing.T) {
	h := newHarness(t) // max_body_bytes = 1 MiB
	big := bytes.Repeat([]byte("x"), 1<<20+1)
	resp, b := h.do("PUT", "/api/v1/files/chunked.bin", h.tokMe, onlyReader{bytes.NewReader(big)})
	want(t, "chunked PUT over the limit", resp, b, 413, "too_large")
	if _, err := os.Stat(filepath.Join(h.wsMe, "chunked.bin")); err == nil {
		t.Error("a refused chunked upload left a file")
	}
	resp, b = h.do("PUT", "/api/v1/files/fits.bin", h.tokMe, onlyReader{bytes.NewReader(big[:1<<20])})
	want(t, "chunked PUT at the limit", resp, b, 201, "")

	s := h.startSession(h.tokMe, `{"command":["sh","-c","cat >/dev/null"]}`)
	defer h.do("DELETE", "/api/v1/sessions/"+s.ID+"?grace=0s", h.tokMe, nil)
	resp, b = h.do("POST", "/api/v1/sessions/"+s.ID+"/input", h.tokMe, bytes.NewReader(big))
	want(t, "input over the limit", resp, b, 413, "too_large")
	resp, b = h.do("POST", "/api/v1/sessions", h.tokMe, strings.NewReader(`{"command":["true"],"name":"`+strings.Repeat("n", maxJSONBody)+`"}`))
	want(t, "JSON over 1 MiB", resp, b, 413, "too_large")
}

// A served user without an agent socket gets 503 with the fix.
func TestAgentUnavailable(t *testing.T) {
	h := newHarness(t)
	if err := os.Remove(filepath.Join(h.socketDir, "agent-"+h.other+".sock")); err != nil {
		t.Fatal(err)
	}
	resp, b := h.do("GET", "/api/v1/status", h.tokOther, nil)
	want(t, "no agent socket", resp, b, 503, "agent_unavailable")
	if fix := "systemctl enable --now octo-agent@" + h.other + ".socket"; !strings.Contains(string(b), fix) {
		t.Errorf("503 body %s does not give the fix %q", b, fix)
	}
	// The other user's trouble is not mine.
	resp, b = h.do("GET", "/api/v1/status", h.tokMe, nil)
	want(t, "my status meanwhile", resp, b, 200, "")
}
