package agent

import (
	"bufio"
	"encoding/gob"
	"io"
	"net/rpc"
	"sync"

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
// reply buffers back to chunkPool once they are written.
type serverCodec struct {
	rwc    io.ReadWriteCloser
	dec    *gob.Decoder
	enc    *gob.Encoder
	encBuf *bufio.Writer
	closed bool
}

func newServerCodec(conn io.ReadWriteCloser) *serverCodec {
	buf := bufio.NewWriter(conn)
	return &serverCodec{rwc: conn, dec: gob.NewDecoder(conn), enc: gob.NewEncoder(buf), encBuf: buf}
}

func (c *serverCodec) ReadRequestHeader(r *rpc.Request) error { return c.dec.Decode(r) }

func (c *serverCodec) ReadRequestBody(body any) error { return c.dec.Decode(body) }

func (c *serverCodec) WriteResponse(r *rpc.Response, body any) error {
	defer recycle(body)
	if err := c.enc.Encode(r); err != nil {
		if c.encBuf.Flush() == nil {
			c.Close() // gob could not encode the header: a bug; drop the connection
		}
		return err
	}
	if err := c.enc.Encode(body); err != nil {
		if c.encBuf.Flush() == nil {
			c.Close()
		}
		return err
	}
	return c.encBuf.Flush()
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

func (c *serverCodec) Close() error {
	if c.closed {
		return nil // only once, as net/rpc's own codec
	}
	c.closed = true
	return c.rwc.Close()
}
