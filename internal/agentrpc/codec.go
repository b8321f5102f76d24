package agentrpc

import (
	"bufio"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"net/rpc"
	"sync/atomic"
)

// clientCodec is net/rpc's gob client codec (the same wire format) that
// writes requests through a BatchWriter and bounds each reply.
type clientCodec struct {
	*BatchWriter // writes requests; Close closes the connection
	dec          *gob.Decoder
	lim          *replyLimiter // what dec reads, at most MaxReplySize per reply
}

func newClientCodec(conn io.ReadWriteCloser) *clientCodec {
	lim := &replyLimiter{r: bufio.NewReader(conn)}
	return &clientCodec{BatchWriter: NewBatchWriter(conn), dec: gob.NewDecoder(lim), lim: lim}
}

func (c *clientCodec) WriteRequest(r *rpc.Request, body any) error { return c.Write(r, body) }

// ReadResponseHeader starts a reply: the header and the body that follows
// it may take MaxReplySize bytes together.
func (c *clientCodec) ReadResponseHeader(r *rpc.Response) error {
	c.lim.left = MaxReplySize
	return c.checked(c.dec.Decode(r))
}

func (c *clientCodec) ReadResponseBody(body any) error { return c.checked(c.dec.Decode(body)) }

// checked closes the connection when a reply broke the limit: the agent
// misbehaves, and the rest of the stream cannot be trusted.
func (c *clientCodec) checked(err error) error {
	if err != nil && c.lim.err != nil {
		c.Close()
		return c.lim.err
	}
	return err
}

// replyErr is the error that ended the connection because of a bad reply, or nil.
func (c *clientCodec) replyErr() error {
	if e := c.lim.errOnce.Load(); e != nil {
		return e
	}
	return nil
}

// MaxReplySize bounds one reply (header and body) from an agent. The largest
// legitimate replies, a File.Read chunk or a long directory listing, are far
// below it; an agent sending more is broken or hostile, and its connection
// is closed rather than let it exhaust the control plane's memory.
const MaxReplySize = MaxWriteSize + 1<<20

// ErrBadReply matches errors caused by an agent reply the client refused
// (over MaxReplySize); the connection is closed.
var ErrBadReply = errors.New("bad agent reply")

// replyLimiter lets the gob decoder read at most left bytes. It is an
// io.ByteReader, so gob reads through it without buffering of its own and
// the count is exact.
type replyLimiter struct {
	r       *bufio.Reader
	left    int64
	err     error // set by the reader goroutine when the limit was hit
	errOnce atomic.Pointer[replyError]
}

type replyError struct{ msg string }

func (e *replyError) Error() string        { return e.msg }
func (e *replyError) Is(target error) bool { return target == ErrBadReply }

func (l *replyLimiter) tooBig() error {
	if l.err == nil {
		e := &replyError{fmt.Sprintf("agent reply over the limit of %d bytes; connection closed", MaxReplySize)}
		l.err = e
		l.errOnce.Store(e)
	}
	return l.err
}

func (l *replyLimiter) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, l.tooBig()
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

func (l *replyLimiter) ReadByte() (byte, error) {
	if l.left <= 0 {
		return 0, l.tooBig()
	}
	b, err := l.r.ReadByte()
	if err == nil {
		l.left--
	}
	return b, err
}
