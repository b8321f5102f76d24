package api

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFileRoutes(t *testing.T) {
	h := newHarness(t)
	tok := h.tokMe
	ws := h.wsMe
	big := bytes.Repeat([]byte("0123456789abcdef"), 200<<10) // 3.2 MiB: several agent reads
	os.WriteFile(filepath.Join(ws, "big.bin"), big, 0o644)
	os.WriteFile(filepath.Join(ws, "page.html"), []byte("<html>hi</html>"), 0o644)
	os.MkdirAll(filepath.Join(ws, "dir", "sub"), 0o755)
	os.WriteFile(filepath.Join(ws, "dir", "a.txt"), []byte("a"), 0o644)

	// GET: whole file, type, length, last-modified
	resp, b := h.do("GET", "/api/v1/files/big.bin", tok, nil)
	if resp.StatusCode != 200 || !bytes.Equal(b, big) || resp.Header.Get("Content-Length") != "3276800" {
		t.Errorf("GET big.bin: %d, %d bytes (equal %v), length header %s", resp.StatusCode, len(b), bytes.Equal(b, big), resp.Header.Get("Content-Length"))
	}
	resp, b = h.do("GET", "/api/v1/files/page.html", tok, nil)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") || string(b) != "<html>hi</html>" {
		t.Errorf("GET page.html: type %q body %q", ct, b)
	}
	lm := resp.Header.Get("Last-Modified")
	if _, err := http.ParseTime(lm); err != nil {
		t.Errorf("Last-Modified %q: %v", lm, err)
	}
	resp, _ = h.do("GET", "/api/v1/files/page.html", tok, nil, "If-Modified-Since", lm)
	if resp.StatusCode != 304 {
		t.Errorf("If-Modified-Since: %d, want 304", resp.StatusCode)
	}
	// Range, including one past the first chunk
	for _, tc := range []struct {
		rng   string
		start int
		end   int // exclusive
	}{
		{"bytes=0-9", 0, 10},
		{"bytes=2000000-2000099", 2000000, 2000100},
		{"bytes=-5", len(big) - 5, len(big)},
	} {
		resp, b = h.do("GET", "/api/v1/files/big.bin", tok, nil, "Range", tc.rng)
		if resp.StatusCode != 206 || !bytes.Equal(b, big[tc.start:tc.end]) {
			t.Errorf("Range %s: %d %q", tc.rng, resp.StatusCode, b)
		}
	}
	resp, b = h.do("GET", "/api/v1/files/page.html", tok, nil, "Range", "bytes=6-7")
	if resp.StatusCode != 206 || string(b) != "hi" {
		t.Errorf("Range on a small file: %d %q", resp.StatusCode, b)
	}
	os.WriteFile(filepath.Join(ws, "empty"), nil, 0o644)
	resp, b = h.do("GET", "/api/v1/files/empty", tok, nil)
	if resp.StatusCode != 200 || len(b) != 0 || resp.Header.Get("Content-Length") != "0" {
		t.Errorf("empty file: %d %q length %q", resp.StatusCode, b, resp.Header.Get("Content-Length"))
	}
	resp, _ = h.do("GET", "/api/v1/files/big.bin", tok, nil, "Range", "bytes=9999999-")
	if resp.StatusCode != 416 {
		t.Errorf("unsatisfiable range: %d, want 416", resp.StatusCode)
	}
	resp, b = h.do("HEAD", "/api/v1/files/page.html", tok, nil)
	if resp.StatusCode != 200 || len(b) != 0 || resp.Header.Get("Content-Length") != "15" {
		t.Errorf("HEAD: %d %q length %s", resp.StatusCode, b, resp.Header.Get("Content-Length"))
	}

	// directory listings
	for _, p := range []string{"/api/v1/files", "/api/v1/files/", "/api/v1/files/dir", "/api/v1/files/dir/"} {
		resp, b = h.do("GET", p, tok, nil)
		d := decode[dirJSON](t, b)
		if resp.StatusCode != 200 || d.Type != "dir" || len(d.Entries) == 0 {
			t.Errorf("GET %s: %d %s", p, resp.StatusCode, b)
		}
	}
	_, b = h.do("GET", "/api/v1/files/dir", tok, nil)
	d := decode[dirJSON](t, b)
	if len(d.Entries) != 2 || d.Entries[0].Name != "a.txt" || d.Entries[0].Type != "file" || d.Entries[1].Type != "dir" || d.Entries[0].Mode != "0644" {
		t.Errorf("listing of dir: %+v", d.Entries)
	}

	// PUT: atomic write, mode, parents, create-only, size limit
	resp, b = h.do("PUT", "/api/v1/files/new.txt?mode=0600", tok, strings.NewReader("fresh"))
	if f := decode[fileJSON](t, b); resp.StatusCode != 201 || f.Size != 5 || f.Mode != "0600" {
		t.Errorf("PUT new.txt: %d %s", resp.StatusCode, b)
	}
	if got, _ := os.ReadFile(filepath.Join(ws, "new.txt")); string(got) != "fresh" {
		t.Errorf("new.txt holds %q", got)
	}
	resp, b = h.do("PUT", "/api/v1/files/x/y/z.txt", tok, strings.NewReader("deep"))
	want(t, "PUT without parents", resp, b, 404, "not_found")
	if m := "parent directory x/y does not exist; add ?parents=1 to create it"; !strings.Contains(string(b), m) {
		t.Errorf("PUT without parents: %s, want the message %q", b, m)
	}
	resp, b = h.do("PUT", "/api/v1/files/x/y/z.txt?parents=1", tok, strings.NewReader("deep"))
	want(t, "PUT with parents", resp, b, 201, "")
	resp, b = h.do("PUT", "/api/v1/files/new.txt", tok, strings.NewReader("again"), "If-None-Match", "*")
	want(t, "PUT If-None-Match over an existing file", resp, b, 412, "precondition_failed")
	resp, b = h.do("PUT", "/api/v1/files/huge.bin", tok, bytes.NewReader(make([]byte, 2<<20))) // limit is 1 MiB
	want(t, "PUT over the body limit", resp, b, 413, "too_large")
	if _, err := os.Stat(filepath.Join(ws, "huge.bin")); err == nil {
		t.Error("a refused upload left a file")
	}
	resp, b = h.do("PUT", "/api/v1/files/new.txt?mode=rw", tok, strings.NewReader("x"))
	want(t, "PUT bad mode", resp, b, 400, "invalid")

	// mkdir, rename
	resp, b = h.do("POST", "/api/v1/files/made?op=mkdir", tok, nil)
	want(t, "mkdir", resp, b, 201, "")
	resp, b = h.do("POST", "/api/v1/files/made?op=mkdir", tok, nil)
	want(t, "mkdir again", resp, b, 409, "exists")
	resp, b = h.do("POST", "/api/v1/files/p/q/r?op=mkdir&parents=1", tok, nil)
	want(t, "mkdir -p", resp, b, 201, "")
	resp, b = h.do("POST", "/api/v1/files/new.txt?op=rename&to=made/renamed.txt", tok, nil)
	want(t, "rename", resp, b, 200, "")
	if got, _ := os.ReadFile(filepath.Join(ws, "made", "renamed.txt")); string(got) != "fresh" {
		t.Errorf("renamed file holds %q", got)
	}
	resp, b = h.do("POST", "/api/v1/files/page.html?op=rename&to=big.bin&no_replace=1", tok, nil)
	want(t, "rename no_replace", resp, b, 409, "exists")
	resp, b = h.do("POST", "/api/v1/files/page.html?op=rename", tok, nil)
	want(t, "rename without to", resp, b, 400, "invalid")
	resp, b = h.do("POST", "/api/v1/files/page.html?op=chmod", tok, nil)
	want(t, "unknown op", resp, b, 400, "invalid")
	resp, b = h.do("POST", "/api/v1/files/page.html?op=rename&to=../../escaped", tok, nil)
	want(t, "rename out of the workspace", resp, b, 403, "outside_workspace")

	// DELETE
	resp, b = h.do("DELETE", "/api/v1/files/dir", tok, nil)
	want(t, "DELETE non-empty dir", resp, b, 400, "invalid")
	resp, b = h.do("DELETE", "/api/v1/files/dir?recursive=1", tok, nil)
	want(t, "DELETE recursive", resp, b, 204, "")
	if _, err := os.Stat(filepath.Join(ws, "dir")); err == nil {
		t.Error("dir still exists after recursive delete")
	}
	resp, b = h.do("DELETE", "/api/v1/files/", tok, nil)
	want(t, "DELETE the workspace", resp, b, 400, "invalid")
	resp, b = h.do("DELETE", "/api/v1/files/nope", tok, nil)
	want(t, "DELETE missing", resp, b, 404, "not_found")
	resp, b = h.do("GET", "/api/v1/files/nope", tok, nil)
	want(t, "GET missing", resp, b, 404, "not_found")
	resp, b = h.do("GET", "/api/v1/files/..%2Fetc%2Fpasswd", tok, nil)
	want(t, "GET outside", resp, b, 403, "outside_workspace")

	// A symlink pointing out of the workspace is not followed.
	os.Symlink("/etc/passwd", filepath.Join(ws, "link"))
	resp, b = h.do("GET", "/api/v1/files/link", tok, nil)
	if resp.StatusCode == 200 || strings.Contains(string(b), "root:") {
		t.Errorf("GET of a symlink to /etc/passwd: %d %.40q", resp.StatusCode, b)
	}
}

// Absolute paths reach the agent unchanged and are refused (403
// outside_workspace), never made relative: a workspace file at etc/passwd
// must not be what /api/v1/files//etc/passwd or to=/etc/x means. Paths
// ServeMux would clean are refused rather than redirected elsewhere.
func TestAbsolutePathsRefused(t *testing.T) {
	h := newHarness(t)
	tok, ws := h.tokMe, h.wsMe
	os.MkdirAll(filepath.Join(ws, "etc"), 0o755)
	os.WriteFile(filepath.Join(ws, "etc", "passwd"), []byte("decoy"), 0o644)
	os.WriteFile(filepath.Join(ws, "f.txt"), []byte("f"), 0o644)
	noRedirect := *h.client
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	h.client = &noRedirect
	for _, tc := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/api/v1/files//etc/passwd", 403, "outside_workspace"},
		{"HEAD", "/api/v1/files//etc/passwd", 403, ""},
		{"GET", "/api/v1/files/%2Fetc%2Fpasswd", 403, "outside_workspace"},
		{"GET", "/api/v1/files/x/../../etc/passwd", 403, "outside_workspace"},
		{"GET", "/api/v1//files/etc/passwd", 400, "invalid"},
		{"GET", "/api//v1/files//etc/passwd", 400, "invalid"},
		{"PUT", "/api/v1/files//etc/x", 403, "outside_workspace"},
		{"DELETE", "/api/v1/files//etc/passwd", 403, "outside_workspace"},
		{"DELETE", "/api/v1/files/etc/..", 400, "invalid"},
		{"POST", "/api/v1/files//etc/y?op=mkdir", 403, "outside_workspace"},
		{"POST", "/api/v1/files/f.txt?op=rename&to=/etc/x", 403, "outside_workspace"},
		{"POST", "/api/v1/files/f.txt?op=rename&to=//etc/x", 403, "outside_workspace"},
	} {
		resp, b := h.do(tc.method, tc.path, tok, strings.NewReader("data"))
		want(t, tc.method+" "+tc.path, resp, b, tc.status, tc.code)
		if strings.Contains(string(b), "decoy") {
			t.Errorf("%s %s served the workspace's etc/passwd", tc.method, tc.path)
		}
	}
	for _, f := range []string{"etc/passwd", "f.txt"} {
		if _, err := os.Stat(filepath.Join(ws, f)); err != nil {
			t.Errorf("%s after the refused requests: %v", f, err)
		}
	}
	for _, f := range []string{"etc/x", "etc/y"} {
		if _, err := os.Stat(filepath.Join(ws, f)); err == nil {
			t.Errorf("%s was created inside the workspace", f)
		}
	}
}
