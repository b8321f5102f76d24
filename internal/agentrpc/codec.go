package agentrpc

import (
	"bufio"
	"encoding/gob"
	"io"
	"net/rpc"
	"runtime"
	"sync"
	"sync/atomic"
)

// clientCodec is net/rpc's gob client codec (the same wire format) that
// writes requests from one flusher goroutine: requests encoded while it is
// busy or waiting for its turn leave together in one write, and a lone
// request is written as soon as the flusher runs.
type clientCodec struct {
	rwc io.ReadWriteCloser
	dec *gob.Decoder

	mu     sync.Mutex // guards enc and encBuf
	enc    *gob.Encoder
	encBuf *bufio.Writer
	closed atomic.Bool

	kick chan struct{} // capacity 1: encBuf holds requests to flush
	done chan struct{} // closed by Close
}

func newClientCodec(conn io.ReadWriteCloser) *clientCodec {
	buf := bufio.NewWriterSize(conn, 64<<10)
	c := &clientCodec{rwc: conn, dec: gob.NewDecoder(conn), enc: gob.NewEncoder(buf), encBuf: buf,
		kick: make(chan struct{}, 1), done: make(chan struct{})}
	go c.flusher()
	return c
}

func (c *clientCodec) WriteRequest(r *rpc.Request, body any) error {
	c.mu.Lock()
	err := c.enc.Encode(r)
	if err == nil {
		err = c.enc.Encode(body)
	}
	c.mu.Unlock()
	if err != nil {
		// gob could not encode the request (a bug), and the stream may hold
		// half of it: end the connection, as the other calls would fail.
		c.Close()
		return err
	}
	select {
	case c.kick <- struct{}{}:
	default: // the flusher has yet to take the previous kick: it sends this one too
	}
	return nil
}

// flusher writes encoded requests until the codec is closed. It yields once
// before each write so that callers already running may add their requests.
func (c *clientCodec) flusher() {
	for {
		select {
		case <-c.done:
			return
		case <-c.kick:
		}
		runtime.Gosched()
		c.mu.Lock()
		err := c.encBuf.Flush()
		c.mu.Unlock()
		if err != nil {
			c.Close() // the reader then fails and net/rpc fails the calls in flight
			return
		}
	}
}

func (c *clientCodec) ReadResponseHeader(r *rpc.Response) error { return c.dec.Decode(r) }

func (c *clientCodec) ReadResponseBody(body any) error { return c.dec.Decode(body) }

// Close closes the connection once, without waiting for a flush in
// progress (which the close ends).
func (c *clientCodec) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(c.done)
	return c.rwc.Close()
}
