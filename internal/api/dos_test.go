package api

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"octo/internal/agentrpc"
)

// serverWith serves h's API with a changed config and returns its URL.
func (h *harness) serverWith(change func(*Config)) (*Server, string) {
	cfg := h.srv.cfg
	change(&cfg)
	srv := New(cfg)
	ts := httptest.NewServer(srv.Handler())
	h.t.Cleanup(ts.Close)
	return srv, ts.URL
}

func (h *harness) put(url, path string, body io.Reader, length int64) (*http.Response, []byte, error) {
	req, _ := http.NewRequest("PUT", url+path, body)
	req.ContentLength = length
	req.Header.Set("Authorization", "Bearer "+h.tokMe)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b, nil
}

// One user's uploads in progress count against that user only: four PUTs
// announcing 64 MiB that never send it (the attack of issue 11) leave
// another user's upload unaffected, and the same user's next one is 429
// (logged with the user) until one finishes.
func TestUploadsPerUser(t *testing.T) {
	h := newHarness(t)
	srv, url := h.serverWith(func(c *Config) { c.MaxUploadsPerUser = 4; c.MaxBodyBytes = 0 })
	type result struct {
		resp *http.Response
		body []byte
		err  error
	}
	var pws []*io.PipeWriter
	results := make(chan result, 4)
	for i := range 4 {
		pr, pw := io.Pipe()
		pws = append(pws, pw)
		go func() {
			resp, b, err := h.put(url, fmt.Sprintf("/api/v1/files/stall%d.bin", i), pr, 64<<20)
			results <- result{resp, b, err}
		}()
	}
	for srv.uploads.inUse(h.me) < 4 {
		time.Sleep(time.Millisecond)
	}
	req := func(tok, path string) (*http.Response, []byte) {
		rq, _ := http.NewRequest("PUT", url+path, strings.NewReader("tiny"))
		rq.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(rq)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	resp, b := req(h.tokOther, "/api/v1/files/other.bin")
	want(t, "another user's PUT while the first holds four", resp, b, 201, "")
	resp, b = req(h.tokMe, "/api/v1/files/fifth.bin")
	want(t, "the same user's fifth PUT", resp, b, 429, "limit")
	if !strings.Contains(h.log.String(), "upload refused") || !strings.Contains(h.log.String(), "user="+h.me) {
		t.Errorf("no log line names the refused user:\n%s", h.log.String())
	}
	for _, pw := range pws {
		pw.CloseWithError(io.ErrUnexpectedEOF)
	}
	for range 4 {
		<-results
	}
	for srv.uploads.inUse(h.me) != 0 {
		time.Sleep(time.Millisecond)
	}
	resp, b = req(h.tokMe, "/api/v1/files/fifth.bin")
	want(t, "PUT once the others ended", resp, b, 201, "")
	if m, _ := filepath.Glob(filepath.Join(h.wsMe, ".*.octo-tmp-*")); len(m) != 0 {
		t.Errorf("temporary files left by the abandoned uploads: %v", m)
	}
}

// A client that stops sending its body gets 408 after body_read_timeout,
// and nothing is written.
func TestBodyReadTimeout(t *testing.T) {
	h := newHarness(t)
	_, url := h.serverWith(func(c *Config) { c.BodyReadTimeout = 300 * time.Millisecond })
	sess := h.startSession(h.tokMe, `{"command":["sh","-c","cat >/dev/null"]}`)
	defer h.do("DELETE", "/api/v1/sessions/"+sess.ID+"?grace=0s", h.tokMe, nil)
	for _, path := range []string{"/api/v1/files/slow.bin", "/api/v1/sessions/" + sess.ID + "/input"} {
		method := "PUT"
		if strings.HasSuffix(path, "input") {
			method = "POST"
		}
		conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 1000\r\n\r\nonly the start", method, path, h.tokMe)
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want(t, "stalled "+method+" "+path, resp, b, 408, "timeout")
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("stalled %s answered after %v, want about 300ms", path, d)
		}
	}
	if _, err := os.Stat(filepath.Join(h.wsMe, "slow.bin")); err == nil {
		t.Error("a stalled upload left a file")
	}
}

// RangeFile serves File.Read of a 3,000,000-byte file, byte i = i%251,
// recording the lengths asked for.
type RangeFile struct {
	mu      *sync.Mutex
	lengths *[]int
}

const rangeFileSize = 3000000

func (f RangeFile) Read(req *agentrpc.ReadRequest, r *agentrpc.ReadReply) error {
	f.mu.Lock()
	*f.lengths = append(*f.lengths, req.Length)
	f.mu.Unlock()
	n := min(int64(req.Length), rangeFileSize-req.Offset)
	r.Data = make([]byte, n)
	for i := range r.Data {
		r.Data[i] = byte((req.Offset + int64(i)) % 251)
	}
	r.Info = agentrpc.FileInfo{Name: "f", Type: agentrpc.TypeFile, Size: rangeFileSize}
	r.EOF = req.Offset+n == rangeFileSize
	return nil
}

// Open describes the file without a descriptor: the control plane reads
// it in chunks, as from an agent that cannot pass one.
func (f RangeFile) Open(req *agentrpc.OpenRequest, r *agentrpc.OpenReply) error {
	r.Info = agentrpc.FileInfo{Name: "f", Type: agentrpc.TypeFile, Size: rangeFileSize}
	return nil
}

// A Range request reads from the agent about what its ranges need, not a
// full chunk per range, and more than maxRanges ranges are refused.
func TestRangeReadsOnlyWhatIsAsked(t *testing.T) {
	h := newHarness(t)
	var mu sync.Mutex
	var lengths []int
	h.replaceAgentService(h.other, "File", RangeFile{&mu, &lengths})
	resp, b := h.do("GET", "/api/v1/files/f", h.tokOther, nil, "Range", "bytes=0-0,2999999-2999999,1500000-1500001")
	if resp.StatusCode != 206 {
		t.Fatalf("GET with 3 ranges: %d %s", resp.StatusCode, b)
	}
	_, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	mr := multipart.NewReader(bytes.NewReader(b), params["boundary"])
	var got []string
	for {
		p, err := mr.NextPart()
		if err != nil {
			break
		}
		data, _ := io.ReadAll(p)
		got = append(got, fmt.Sprint(data))
	}
	wantParts := []string{fmt.Sprint([]byte{0}), fmt.Sprint([]byte{2999999 % 251}), fmt.Sprint([]byte{1500000 % 251, 1500001 % 251})}
	if fmt.Sprint(got) != fmt.Sprint(wantParts) {
		t.Errorf("parts = %v, want %v", got, wantParts)
	}
	mu.Lock()
	total := 0
	for _, n := range lengths {
		total += n
	}
	mu.Unlock()
	if limit := 3 * minRead; total > limit {
		t.Errorf("agent reads for 3 small ranges: %v = %d bytes, want at most %d", lengths, total, limit)
	}

	many := "bytes=0-0" + strings.Repeat(",2-2", maxRanges)
	resp, b = h.do("GET", "/api/v1/files/f", h.tokOther, nil, "Range", many)
	want(t, fmt.Sprintf("GET with %d ranges", maxRanges+1), resp, b, 416, "invalid")
	resp, _ = h.do("GET", "/api/v1/files/f", h.tokOther, nil, "Range", "bytes=0-0"+strings.Repeat(",2-2", maxRanges-1))
	if resp.StatusCode != 206 && resp.StatusCode != 200 {
		t.Errorf("GET with %d ranges: %d, want it served", maxRanges, resp.StatusCode)
	}
}
