package agent

import (
	"io"
	"net/rpc"
	"sync"

	"octo/internal/agentrpc"
	"octo/internal/agentrpc/wire"
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

// serverCodec is agentrpc's server codec, which the connection's workers
// share (see workers.go): a read lock keeps each request's header and body
// together, and reply buffers go back to chunkPool once encoded.
type serverCodec struct {
	*wire.ServerCodec

	rl     readLock // held from a request's header to the end of its body
	onRead func()   // called once a request has been read, if set
}

func newServerCodec(conn io.ReadWriteCloser) *serverCodec {
	return &serverCodec{ServerCodec: agentrpc.NewServerCodec(conn)}
}

// ReadRequestHeader takes the read lock and reads a header. net/rpc calls
// ReadRequestBody after every header read without error; any error here
// ends the connection, as it does for rpc.Server.
func (c *serverCodec) ReadRequestHeader(r *rpc.Request) error {
	if err := c.rl.lock(); err != nil {
		return err
	}
	if err := c.ServerCodec.ReadRequestHeader(r); err != nil {
		c.rl.end(err)
		return err
	}
	return nil
}

// ReadRequestBody reads a body (or discards it, for a nil body) and
// releases the read lock.
func (c *serverCodec) ReadRequestBody(body any) error {
	err := c.ServerCodec.ReadRequestBody(body)
	c.rl.unlock()
	if c.onRead != nil {
		c.onRead()
	}
	return err
}

func (c *serverCodec) WriteResponse(r *rpc.Response, body any) error {
	defer recycle(body)
	return c.ServerCodec.WriteResponse(r, body)
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
	case *agentrpc.OpenReply:
		putChunk(b.Data)
		b.Data = nil
	}
}
