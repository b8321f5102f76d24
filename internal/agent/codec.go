package agent

import (
	"bufio"
	"encoding/gob"
	"io"
	"net/rpc"
	"runtime"
	"sync"
	"sync/atomic"

	"octo/internal/agentrpc"
)

// chunkPool recycles the buffers of File.Read and Session.ReadOutput
// replies, up to MaxReadChunk each: the codec returns them once encoded.
var chunkPool = sync.Pool{New: func() any { return new([]byte) }}

// getChunk returns a buffer of n bytes, not zeroed.
func getChunk(n int) []byte {
	p := chunkPool.Get().(*[]byte)
	if cap(*p) < n {
		return make([]byte, n, max(n, 64<<10))
	}
	return (*p)[:n]
}

func putChunk(b []byte) {
	if cap(b) == 0 || cap(b) > agentrpc.MaxReadChunk {
		return
	}
	b = b[:0]
	chunkPool.Put(&b)
}

// serverCodec is net/rpc's gob server codec (same wire format) that gives
// reply buffers back to chunkPool once they are encoded, and writes replies
// from one flusher goroutine: replies encoded while it is busy or waiting
// for its turn leave together in one write.
type serverCodec struct {
	rwc io.ReadWriteCloser
	dec *gob.Decoder

	mu     sync.Mutex // guards enc and encBuf
	enc    *gob.Encoder
	encBuf *bufio.Writer
	closed atomic.Bool

	kick chan struct{} // capacity 1: encBuf holds replies to flush
	done chan struct{} // closed by Close
}

func newServerCodec(conn io.ReadWriteCloser) *serverCodec {
	buf := bufio.NewWriterSize(conn, 64<<10)
	c := &serverCodec{rwc: conn, dec: gob.NewDecoder(conn), enc: gob.NewEncoder(buf), encBuf: buf,
		kick: make(chan struct{}, 1), done: make(chan struct{})}
	go c.flusher()
	return c
}

func (c *serverCodec) ReadRequestHeader(r *rpc.Request) error { return c.dec.Decode(r) }

func (c *serverCodec) ReadRequestBody(body any) error { return c.dec.Decode(body) }

func (c *serverCodec) WriteResponse(r *rpc.Response, body any) error {
	defer recycle(body)
	c.mu.Lock()
	err := c.enc.Encode(r)
	if err == nil {
		err = c.enc.Encode(body)
	}
	if err != nil {
		// gob could not encode a reply: a bug. Send what is complete and
		// drop the connection, as net/rpc's own codec does.
		c.encBuf.Flush()
		c.mu.Unlock()
		c.Close()
		return err
	}
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default: // the flusher has yet to take the previous kick: it sends this one too
	}
	return nil
}

// flusher writes encoded replies until the codec is closed. It yields once
// before each write so that calls already running may add their replies.
func (c *serverCodec) flusher() {
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
			c.Close() // the reader then fails and net/rpc ends the connection
			return
		}
	}
}

// recycle returns the data buffer of a written reply to the pool. net/rpc
// does not touch a reply after writing it.
func recycle(body any) {
	switch b := body.(type) {
	case *agentrpc.ReadReply:
		putChunk(b.Data)
		b.Data = nil
	case *agentrpc.Output:
		putChunk(b.Data)
		b.Data = nil
	}
}

// Close closes the connection once, as net/rpc's own codec, without
// waiting for a flush in progress (which the close ends).
func (c *serverCodec) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(c.done)
	return c.rwc.Close()
}
