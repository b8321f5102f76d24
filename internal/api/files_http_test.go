package api

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// getWith sends a request to url with the harness's token for me.
func (h *harness) send(url, method, path string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	h.t.Helper()
	req, _ := http.NewRequest(method, url+path, body)
	req.Header.Set("Authorization", "Bearer "+h.tokMe)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// Uploads and downloads work the same by descriptor and in chunks (as
// with an agent that cannot pass descriptors), against a real agent.
func TestFileTransports(t *testing.T) {
	for _, fds := range []bool{true, false} {
		t.Run(map[bool]string{true: "fd", false: "chunks"}[fds], func(t *testing.T) {
			h := newHarness(t)
			if !fds {
				h.srv.cfg.Pool.DisableFDPassing()
			}
			_, url := h.serverWith(func(c *Config) { c.MaxBodyBytes = 0 })
			data := make([]byte, 5<<20+3)
			for i := range data {
				data[i] = byte(i % 253)
			}
			resp, b := h.send(url, "PUT", "/api/v1/files/d/big.bin?parents=1", bytes.NewReader(data))
			want(t, "PUT create", resp, b, 201, "")
			etag := resp.Header.Get("ETag")
			if got, _ := os.ReadFile(filepath.Join(h.wsMe, "d", "big.bin")); !bytes.Equal(got, data) {
				t.Fatalf("uploaded file: %d bytes, equal %v", len(got), bytes.Equal(got, data))
			}
			resp, b = h.send(url, "GET", "/api/v1/files/d/big.bin", nil)
			if resp.StatusCode != 200 || !bytes.Equal(b, data) || resp.Header.Get("ETag") != etag {
				t.Errorf("GET: %d, %d bytes, equal %v, ETag %q want %q", resp.StatusCode, len(b), bytes.Equal(b, data), resp.Header.Get("ETag"), etag)
			}
			resp, b = h.send(url, "GET", "/api/v1/files/d/big.bin", nil, "Range", "bytes=4000000-4000009")
			if resp.StatusCode != 206 || !bytes.Equal(b, data[4000000:4000010]) {
				t.Errorf("GET range: %d %v, want 206 %v", resp.StatusCode, b, data[4000000:4000010])
			}
			resp, b = h.send(url, "GET", "/api/v1/files/d/big.bin", nil, "If-None-Match", etag)
			want(t, "GET If-None-Match current", resp, b, 304, "")
			resp, b = h.send(url, "PUT", "/api/v1/files/d/big.bin", strings.NewReader("small now"), "If-Match", etag)
			want(t, "PUT replace If-Match current", resp, b, 200, "")
			if resp.Header.Get("ETag") == etag || resp.Header.Get("ETag") == "" {
				t.Errorf("ETag after replace: %q (before %q)", resp.Header.Get("ETag"), etag)
			}
			resp, b = h.send(url, "PUT", "/api/v1/files/d/big.bin", strings.NewReader("lost update"), "If-Match", etag)
			want(t, "PUT replace If-Match stale", resp, b, 412, "precondition_failed")
			if got, _ := os.ReadFile(filepath.Join(h.wsMe, "d", "big.bin")); string(got) != "small now" {
				t.Errorf("after a refused PUT: %q", got)
			}
			if m, _ := filepath.Glob(filepath.Join(h.wsMe, "d", ".*.octo-tmp-*")); len(m) != 0 {
				t.Errorf("temporary files left: %v", m)
			}
		})
	}
}

// Conditional requests (RFC 9110 section 13), each a table row: the
// status, the error code for a 4xx, and whether the file was changed.
func TestFileConditionals(t *testing.T) {
	h := newHarness(t)
	p := filepath.Join(h.wsMe, "c.txt")
	old := time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)
	future := time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)
	tests := []struct {
		method string
		hdr    []string // name, value; "ETAG" is replaced by the file's ETag
		status int
		code   string
		change bool
	}{
		{"GET", []string{"If-None-Match", "ETAG"}, 304, "", false},
		{"GET", []string{"If-None-Match", `W/ETAG`}, 304, "", false},
		{"GET", []string{"If-None-Match", `"other"`}, 200, "", false},
		{"GET", []string{"If-Match", `"other"`}, 412, "precondition_failed", false},
		{"GET", []string{"If-Match", "ETAG"}, 200, "", false},
		{"HEAD", []string{"If-None-Match", "*"}, 304, "", false},
		{"GET", []string{"If-Modified-Since", future}, 304, "", false},
		{"GET", []string{"If-Unmodified-Since", old}, 412, "precondition_failed", false},
		{"PUT", []string{"If-Match", "ETAG"}, 200, "", true},
		{"PUT", []string{"If-Match", `"other", ETAG`}, 200, "", true},
		{"PUT", []string{"If-Match", `W/ETAG`}, 412, "precondition_failed", false},
		{"PUT", []string{"If-Match", `"other"`}, 412, "precondition_failed", false},
		{"PUT", []string{"If-None-Match", "*"}, 412, "precondition_failed", false},
		{"PUT", []string{"If-None-Match", "ETAG"}, 412, "precondition_failed", false},
		{"PUT", []string{"If-None-Match", `"other"`}, 200, "", true},
		{"PUT", []string{"If-Unmodified-Since", old}, 412, "precondition_failed", false},
		{"PUT", []string{"If-Unmodified-Since", future}, 200, "", true},
		{"PUT", nil, 200, "", true},
		{"DELETE", []string{"If-Match", `"other"`}, 412, "precondition_failed", false},
		{"DELETE", []string{"If-Unmodified-Since", old}, 412, "precondition_failed", false},
		{"DELETE", []string{"If-None-Match", "ETAG"}, 412, "precondition_failed", false},
		{"DELETE", []string{"If-Match", "ETAG"}, 204, "", true},
	}
	for _, tt := range tests {
		os.WriteFile(p, []byte("original"), 0o644)
		resp, _ := h.do("HEAD", "/api/v1/files/c.txt", h.tokMe, nil)
		etag := resp.Header.Get("ETag")
		if !strings.HasPrefix(etag, `"`) {
			t.Fatalf("HEAD: ETag %q, want a strong tag", etag)
		}
		hdr := append([]string(nil), tt.hdr...)
		for i := range hdr {
			hdr[i] = strings.ReplaceAll(hdr[i], "ETAG", etag)
		}
		var body io.Reader
		if tt.method == "PUT" {
			body = strings.NewReader("replaced")
		}
		what := fmt.Sprintf("%s %v", tt.method, hdr)
		resp, b := h.do(tt.method, "/api/v1/files/c.txt", h.tokMe, body, hdr...)
		want(t, what, resp, b, tt.status, tt.code)
		got, err := os.ReadFile(p)
		if changed := err != nil || string(got) != "original"; changed != tt.change {
			t.Errorf("%s: file changed %v, want %v", what, changed, tt.change)
		}
	}
	os.Remove(p)
	resp, b := h.do("PUT", "/api/v1/files/c.txt", h.tokMe, strings.NewReader("x"), "If-Match", "*")
	want(t, "PUT If-Match * on a missing file", resp, b, 412, "precondition_failed")
	resp, b = h.do("PUT", "/api/v1/files/c.txt", h.tokMe, strings.NewReader("x"), "If-None-Match", "*")
	want(t, "PUT If-None-Match * on a missing file", resp, b, 201, "")

	// Through a symlink, the ETag a GET gave is the one PUT and DELETE
	// compare: the file the link leads to, as served.
	os.WriteFile(filepath.Join(h.wsMe, "target.txt"), []byte("t"), 0o644)
	os.Symlink("target.txt", filepath.Join(h.wsMe, "link.txt"))
	resp, _ = h.do("GET", "/api/v1/files/link.txt", h.tokMe, nil)
	etag := resp.Header.Get("ETag")
	resp, b = h.do("PUT", "/api/v1/files/link.txt", h.tokMe, strings.NewReader("new"), "If-Match", etag)
	want(t, "PUT through a symlink with the GET's ETag", resp, b, 200, "")
	os.Remove(filepath.Join(h.wsMe, "link.txt"))
	os.Symlink("target.txt", filepath.Join(h.wsMe, "link.txt"))
	resp, _ = h.do("GET", "/api/v1/files/link.txt", h.tokMe, nil)
	resp, b = h.do("DELETE", "/api/v1/files/link.txt", h.tokMe, nil, "If-Match", resp.Header.Get("ETag"))
	want(t, "DELETE through a symlink with the GET's ETag", resp, b, 204, "")
}

// Range edge cases where http.ServeContent alone answers wrongly.
func TestFileRanges(t *testing.T) {
	h := newHarness(t)
	data := bytes.Repeat([]byte("0123456789"), 100) // 1000 bytes
	os.WriteFile(filepath.Join(h.wsMe, "r.bin"), data, 0o644)
	os.WriteFile(filepath.Join(h.wsMe, "empty"), nil, 0o644)
	tests := []struct {
		path   string
		hdr    []string
		status int
		code   string
		body   string // "" for any
		crange string // Content-Range, "" for none
	}{
		{"r.bin", []string{"Range", "bytes=-0"}, 416, "range_not_satisfiable", "", "bytes */1000"},
		{"r.bin", []string{"Range", "bytes=1000-"}, 416, "range_not_satisfiable", "", "bytes */1000"},
		{"r.bin", []string{"Range", "bytes=5-1"}, 416, "invalid", "", ""},
		{"r.bin", []string{"Range", "bytes=x-y"}, 416, "invalid", "", ""},
		{"empty", []string{"Range", "bytes=-5"}, 200, "", "-", ""},
		{"r.bin", []string{"Range", "items=0-1"}, 200, "", string(data), ""},
		{"r.bin", []string{"Range", "BYTES=0-1"}, 206, "", "01", "bytes 0-1/1000"},
		{"r.bin", []string{"Range", "bytes=-3"}, 206, "", "789", "bytes 997-999/1000"},
		{"r.bin", []string{"Range", "bytes=0-1,-0"}, 206, "", "01", "bytes 0-1/1000"},
		{"r.bin", []string{"Range", "bytes=0-1, 5000-"}, 206, "", "01", "bytes 0-1/1000"},
		{"r.bin", []string{"Range", "bytes=998-5000"}, 206, "", "89", "bytes 998-999/1000"},
		{"r.bin", []string{"Range", "bytes=0-1", "If-Range", `"stale"`}, 200, "", string(data), ""},
		{"r.bin", []string{"Range", "bytes=0-0" + strings.Repeat(",2-2", maxRanges)}, 416, "invalid", "", ""},
		// Preconditions come before the range-count limit.
		{"r.bin", []string{"Range", "bytes=0-0" + strings.Repeat(",2-2", maxRanges), "If-Match", `"stale"`}, 412, "precondition_failed", "", ""},
	}
	for _, tt := range tests {
		what := fmt.Sprintf("GET %s %v", tt.path, tt.hdr)
		resp, b := h.do("GET", "/api/v1/files/"+tt.path, h.tokMe, nil, tt.hdr...)
		want(t, what, resp, b, tt.status, tt.code)
		if tt.body == "-" {
			tt.body = ""
			if len(b) != 0 {
				t.Errorf("%s: body %q, want empty", what, b)
			}
		}
		if tt.body != "" && string(b) != tt.body {
			t.Errorf("%s: body %.40q, want %.40q", what, b, tt.body)
		}
		if got := resp.Header.Get("Content-Range"); got != tt.crange {
			t.Errorf("%s: Content-Range %q, want %q", what, got, tt.crange)
		}
	}
}

// A FIFO, a socket or a device is refused at once with a 400, never a hang.
func TestFileSpecialRefused(t *testing.T) {
	h := newHarness(t)
	if err := syscall.Mkfifo(filepath.Join(h.wsMe, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(h.wsMe, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, p := range []string{"fifo", "sock"} {
		start := time.Now()
		resp, b := h.do("GET", "/api/v1/files/"+p, h.tokMe, nil)
		want(t, "GET "+p, resp, b, 400, "invalid")
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("GET %s took %v", p, d)
		}
	}
}

// Descriptors passed for downloads are closed after each response: the
// process (control plane and in-process agent) holds as many after 2,000
// GETs as before.
func TestGetDescriptorsClosed(t *testing.T) {
	h := newHarness(t)
	os.WriteFile(filepath.Join(h.wsMe, "f.bin"), make([]byte, 200<<10), 0o644)
	h.do("GET", "/api/v1/files/f.bin", h.tokMe, nil)
	count := func() int {
		ents, _ := os.ReadDir("/proc/self/fd")
		return len(ents)
	}
	before := count()
	for range 2000 {
		resp, b := h.do("GET", "/api/v1/files/f.bin", h.tokMe, nil)
		if resp.StatusCode != 200 || len(b) != 200<<10 {
			t.Fatalf("GET: %d, %d bytes", resp.StatusCode, len(b))
		}
	}
	if after := count(); after > before+4 {
		t.Errorf("open descriptors: %d before, %d after 2000 GETs", before, after)
	}
}

// A client that disconnects halfway through an upload leaves the old file
// and no temporary file.
func TestUploadClientGone(t *testing.T) {
	h := newHarness(t)
	_, url := h.serverWith(func(c *Config) { c.MaxBodyBytes = 0 })
	target := filepath.Join(h.wsMe, "keep.bin")
	os.WriteFile(target, []byte("old"), 0o644)
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "PUT /api/v1/files/keep.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", h.tokMe, 1<<30)
	conn.Write(make([]byte, 8<<20))
	deadline := time.Now().Add(10 * time.Second)
	for m, _ := filepath.Glob(filepath.Join(h.wsMe, ".*.octo-tmp-*")); len(m) == 0; m, _ = filepath.Glob(filepath.Join(h.wsMe, ".*.octo-tmp-*")) {
		if time.Now().After(deadline) {
			t.Fatal("no temporary file while the upload runs")
		}
		time.Sleep(5 * time.Millisecond)
	}
	conn.Close()
	for m, _ := filepath.Glob(filepath.Join(h.wsMe, ".*.octo-tmp-*")); len(m) != 0; m, _ = filepath.Glob(filepath.Join(h.wsMe, ".*.octo-tmp-*")) {
		if time.Now().After(deadline) {
			t.Fatalf("temporary files left after the client left: %v", m)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got, _ := os.ReadFile(target); string(got) != "old" {
		t.Errorf("target after an abandoned upload: %.20q, want old", got)
	}
}

// A full disk gives 507 insufficient_storage, the old file intact and no
// temporary file. The workspace is a 1 MiB tmpfs, which needs root.
func TestUploadDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root (CI runs the unit tests as root)")
	}
	h := newHarness(t)
	_, url := h.serverWith(func(c *Config) { c.MaxBodyBytes = 0 })
	small := filepath.Join(h.wsMe, "small")
	os.Mkdir(small, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", small).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", small).Run() })
	os.WriteFile(filepath.Join(small, "f"), []byte("old"), 0o644)
	for _, fds := range []bool{true, false} {
		if !fds {
			h.srv.cfg.Pool.DisableFDPassing()
			h.srv.cfg.Pool.Close() // the next request dials again, without descriptors
		}
		resp, b := h.send(url, "PUT", "/api/v1/files/small/f", bytes.NewReader(make([]byte, 4<<20)))
		want(t, fmt.Sprintf("PUT over a full disk (descriptors %v)", fds), resp, b, 507, "insufficient_storage")
		if got, _ := os.ReadFile(filepath.Join(small, "f")); string(got) != "old" {
			t.Errorf("file after a failed upload: %.20q, want old", got)
		}
		if m, _ := filepath.Glob(filepath.Join(small, ".*.octo-tmp-*")); len(m) != 0 {
			t.Errorf("temporary files left: %v", m)
		}
	}
}
