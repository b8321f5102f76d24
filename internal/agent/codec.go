package agent

import (
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

// serverCodec is net/rpc's gob server codec (same wire format) that writes
// replies through an agentrpc.BatchWriter and gives reply buffers back to
// chunkPool once they are encoded.
type serverCodec struct {
	*agentrpc.BatchWriter // writes replies; Close closes the connection
	dec                   *gob.Decoder
}

func newServerCodec(conn io.ReadWriteCloser) *serverCodec {
	return &serverCodec{BatchWriter: agentrpc.NewBatchWriter(conn), dec: gob.NewDecoder(conn)}
}

func (c *serverCodec) ReadRequestHeader(r *rpc.Request) error { return c.dec.Decode(r) }

func (c *serverCodec) ReadRequestBody(body any) error { return c.dec.Decode(body) }

func (c *serverCodec) WriteResponse(r *rpc.Response, body any) error {
	defer recycle(body)
	return c.Write(r, body)
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
