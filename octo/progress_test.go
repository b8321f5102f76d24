package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// serveProgress serves h on a progressListener with timeout and returns
// its address.
func serveProgress(t *testing.T, timeout time.Duration, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h}
	go hs.Serve(progressListener{ln, timeout})
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String()
}

// bigResponse writes n bytes in 32 KiB writes and reports how it ended.
func bigResponse(n int, done chan<- error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(n))
		buf := make([]byte, 32<<10)
		var err error
		for sent := 0; sent < n && err == nil; sent += len(buf) {
			_, err = w.Write(buf)
		}
		done <- err
	}
}

// A client that stops reading loses its connection once the response makes
// no progress for the timeout: the handler's write fails, freeing it.
func TestStalledReaderIsCut(t *testing.T) {
	done := make(chan error, 1)
	addr := serveProgress(t, 300*time.Millisecond, bigResponse(256<<20, done))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4 << 10)
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") // and never read
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the handler wrote 256 MiB to a client that reads nothing")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a response to a client that reads nothing was still being written after 10s")
	}
}

// A slow client that keeps reading is never cut, though the whole
// response takes many times the timeout.
func TestSlowReaderKeepsConnection(t *testing.T) {
	done := make(chan error, 1)
	const size = 3 << 20
	addr := serveProgress(t, 300*time.Millisecond, bigResponse(size, done))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(64 << 10)
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, 4<<10), nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var got int
	buf := make([]byte, 128<<10)
	for {
		n, err := io.ReadFull(resp.Body, buf)
		got += n
		if err != nil {
			break
		}
		time.Sleep(60 * time.Millisecond) // ~2 MiB/s
	}
	took := time.Since(start)
	if err := <-done; err != nil || got != size {
		t.Errorf("slow reader got %d of %d bytes in %v, handler: %v; want all of it", got, size, took, err)
	}
	if took < time.Second {
		t.Errorf("the slow read took only %v: not many times the 300ms timeout, so it proves nothing", took)
	}
}

// ReadFrom (how net/http sends files) goes a chunk at a time through the
// connection's own ReadFrom, and leaves a LimitedReader's N as io.Copy would.
func TestProgressReadFrom(t *testing.T) {
	data := make([]byte, writeChunk*3+12345)
	rand.Read(data)
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			got <- nil
			return
		}
		b, _ := io.ReadAll(c)
		got <- b
	}()
	c, err := progressListener{ln, time.Second}.Accept()
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(path)
	defer f.Close()
	lr := &io.LimitedReader{R: f, N: int64(len(data) - 100)}
	n, err := c.(io.ReaderFrom).ReadFrom(lr)
	c.Close()
	if err != nil || n != int64(len(data)-100) || lr.N != 0 {
		t.Errorf("ReadFrom = %d, %v, N left %d; want %d, nil, 0", n, err, lr.N, len(data)-100)
	}
	if b := <-got; !bytes.Equal(b, data[:len(data)-100]) {
		t.Errorf("the peer got %d bytes, not the file's first %d", len(b), len(data)-100)
	}
	// Without a limit, to the end of the reader.
	var sink bytes.Buffer
	pc := &progressConn{Conn: writerConn{&sink}, timeout: time.Second}
	if n, err := pc.ReadFrom(bytes.NewReader(data)); err != nil || n != int64(len(data)) || !bytes.Equal(sink.Bytes(), data) {
		t.Errorf("ReadFrom to a plain writer = %d, %v", n, err)
	}
}

// writerConn is a net.Conn that only writes, to w.
type writerConn struct{ w io.Writer }

func (c writerConn) Write(p []byte) (int, error)        { return c.w.Write(p) }
func (c writerConn) Read([]byte) (int, error)           { return 0, errors.New("write only") }
func (c writerConn) Close() error                       { return nil }
func (c writerConn) LocalAddr() net.Addr                { return nil }
func (c writerConn) RemoteAddr() net.Addr               { return nil }
func (c writerConn) SetDeadline(time.Time) error        { return nil }
func (c writerConn) SetReadDeadline(time.Time) error    { return nil }
func (c writerConn) SetWriteDeadline(t time.Time) error { return nil }

// Over HTTP/2 a client that stops reading one stream stalls it on flow
// control, not on the connection: the stream's write deadline ends it,
// while a follow-like response idle between writes is not cut.
func TestStalledHTTP2StreamIsCut(t *testing.T) {
	done := make(chan error, 1)
	idle := make(chan error, 1)
	mux := http.NewServeMux()
	mux.Handle("/big", bigResponse(256<<20, done))
	mux.HandleFunc("/idle", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("a"))
		w.(http.Flusher).Flush()
		time.Sleep(time.Second) // idle, as a follow stream waiting for output
		_, err := w.Write([]byte("b"))
		idle <- err
	})
	ts := httptest.NewUnstartedServer(progressHandler(mux, 300*time.Millisecond))
	ts.EnableHTTP2 = true
	ts.StartTLS()
	defer ts.Close()
	hc := ts.Client()
	resp, err := hc.Get(ts.URL + "/big")
	if err != nil || resp.ProtoMajor != 2 {
		t.Fatalf("GET /big: %v %v", resp, err)
	}
	defer resp.Body.Close() // and never read
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the handler wrote 256 MiB to an HTTP/2 stream nobody reads")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a stalled HTTP/2 stream was still being written after 10s")
	}
	resp, err = hc.Get(ts.URL + "/idle")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != "ab" || <-idle != nil {
		t.Errorf("a response idle for 1s between writes (timeout 300ms): %q %v; want it whole", body, err)
	}
}

// BenchmarkWriteDeadlines compares a server on a plain listener with one on
// a progressListener (write deadline renewed per 256 KiB), side by side: a
// small response (one write) and a 16 MiB one sent from a file (ReadFrom,
// sendfile), each over a kept-alive connection.
func BenchmarkWriteDeadlines(b *testing.B) {
	path := filepath.Join(b.TempDir(), "f")
	if err := os.WriteFile(path, make([]byte, 16<<20), 0o600); err != nil {
		b.Fatal(err)
	}
	h := http.NewServeMux()
	h.HandleFunc("/small", func(w http.ResponseWriter, r *http.Request) { w.Write(make([]byte, 1024)) })
	h.HandleFunc("/file", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, path) })
	addrs := map[string]string{}
	for name, wrap := range map[string]func(net.Listener) net.Listener{
		"plain":    func(ln net.Listener) net.Listener { return ln },
		"progress": func(ln net.Listener) net.Listener { return progressListener{ln, 30 * time.Second} },
	} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		hs := &http.Server{Handler: h}
		go hs.Serve(wrap(ln))
		defer hs.Close()
		addrs[name] = ln.Addr().String()
	}
	hc := &http.Client{}
	for _, route := range []string{"small", "file"} {
		for _, name := range []string{"plain", "progress"} { // side by side
			b.Run(route+"/"+name, func(b *testing.B) {
				for b.Loop() {
					resp, err := hc.Get("http://" + addrs[name] + "/" + route)
					if err != nil {
						b.Fatal(err)
					}
					n, _ := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					b.SetBytes(n)
				}
			})
		}
	}
}
