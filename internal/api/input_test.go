package api

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
)

// A client that leaves before the body its Content-Length announced has
// sent nothing of the cut chunk to the session: its stdin gets the next
// request's bytes only.
func TestInputCutShort(t *testing.T) {
	h := newHarness(t)
	c := h.startSession(h.tokMe, `{"command":["cat"]}`)
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	// 10 bytes announced, 5 sent, then the client is gone.
	req := "POST /api/v1/sessions/" + c.ID + "/input HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + h.tokMe +
		"\r\nContent-Length: 10\r\n\r\nhello"
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	conn.(*net.TCPConn).CloseWrite()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusNoContent {
			t.Errorf("a body cut short answered 204, want an error")
		}
	}
	conn.Close()

	r, b := h.do("POST", "/api/v1/sessions/"+c.ID+"/input?eof=1", h.tokMe, strings.NewReader("ok\n"))
	want(t, "input eof", r, b, http.StatusNoContent, "")
	h.waitExit(h.tokMe, c.ID)
	_, b = h.do("GET", "/api/v1/sessions/"+c.ID+"/output", h.tokMe, nil)
	if got := string(b); got != "ok\n" {
		t.Errorf("cat's output %q, want %q: the cut body's bytes must not reach the session", got, "ok\n")
	}
}
