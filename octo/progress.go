package main

import (
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// writeChunk is how many bytes one write may take at most before its
// deadline is renewed: a reader taking in at least writeChunk bytes per
// server.write_timeout keeps its connection, however long the download.
const writeChunk = 256 << 10

// progressListener accepts connections whose writes fail when they make no
// progress for timeout: a client that stops reading frees what its
// request holds (a download's buffers, a stream, a slot of its user's
// requests) after timeout, while a slow one that keeps reading is never cut.
type progressListener struct {
	net.Listener
	timeout time.Duration
}

func (l progressListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &progressConn{Conn: c, timeout: l.timeout}, nil
}

// progressConn renews its write deadline before every chunk it writes.
type progressConn struct {
	net.Conn
	timeout time.Duration
	// set is a deadline set from outside (tls.Conn.Close sets one for its
	// close notification), honoured when earlier; 0 for none.
	set atomic.Int64
}

// deadline returns the write deadline for the next chunk.
func (c *progressConn) deadline() time.Time {
	d := time.Now().Add(c.timeout)
	if set := c.set.Load(); set != 0 && set < d.UnixNano() {
		return time.Unix(0, set)
	}
	return d
}

func (c *progressConn) Write(p []byte) (int, error) {
	var n int
	for n < len(p) {
		if err := c.Conn.SetWriteDeadline(c.deadline()); err != nil {
			return n, err
		}
		m, err := c.Conn.Write(p[n:min(len(p), n+writeChunk)])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// ReadFrom keeps the connection's own ReadFrom (sendfile, splice), a chunk
// at a time.
func (c *progressConn) ReadFrom(r io.Reader) (int64, error) {
	rf, ok := c.Conn.(io.ReaderFrom)
	if !ok {
		return io.Copy(struct{ io.Writer }{c}, r)
	}
	src, remain := r, int64(-1) // -1: until EOF
	if lr, ok := r.(*io.LimitedReader); ok {
		if lr.N <= 0 {
			return 0, nil
		}
		src, remain = lr.R, lr.N
		defer func() { lr.N = remain }()
	}
	var total int64
	for remain != 0 {
		chunk := int64(writeChunk)
		if remain > 0 {
			chunk = min(chunk, remain)
		}
		if err := c.Conn.SetWriteDeadline(c.deadline()); err != nil {
			return total, err
		}
		n, err := rf.ReadFrom(&io.LimitedReader{R: src, N: chunk})
		total += n
		if remain > 0 {
			remain -= n
		}
		if err != nil || n < chunk { // an error, or src is at its end
			return total, err
		}
	}
	return total, nil
}

func (c *progressConn) SetWriteDeadline(t time.Time) error {
	c.set.Store(unixNano(t))
	return c.Conn.SetWriteDeadline(t)
}

func (c *progressConn) SetDeadline(t time.Time) error {
	c.set.Store(unixNano(t))
	return c.Conn.SetDeadline(t)
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// unwrapConn returns the connection a progressConn wraps (peer credentials
// need the *net.UnixConn itself).
func unwrapConn(c net.Conn) net.Conn {
	if pc, ok := c.(*progressConn); ok {
		return pc.Conn
	}
	return c
}

// progressHandler gives each HTTP/2 response the same rule as progressConn
// gives a connection: an HTTP/2 stream whose client reads nothing stalls on
// flow control, which no connection write deadline sees, so each chunk a
// handler writes or flushes must leave within timeout. Between writes no
// deadline is set: a follow stream may wait for output as long as it likes.
func progressHandler(h http.Handler, timeout time.Duration) http.Handler {
	if timeout <= 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 {
			w = &progressWriter{ResponseWriter: w, rc: http.NewResponseController(w), timeout: timeout}
		}
		h.ServeHTTP(w, r)
	})
}

type progressWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (w *progressWriter) Write(p []byte) (int, error) {
	var n int
	for n < len(p) {
		w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
		m, err := w.ResponseWriter.Write(p[n:min(len(p), n+writeChunk)])
		w.rc.SetWriteDeadline(time.Time{})
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (w *progressWriter) FlushError() error {
	w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
	defer w.rc.SetWriteDeadline(time.Time{})
	return w.rc.Flush()
}

func (w *progressWriter) Flush() { w.FlushError() }

func (w *progressWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
