package wire

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/rpc"
	"sync/atomic"
	"time"
)

// The wire format. A client starts its connection with Preamble; then each
// request and reply is a frame: a uvarint length, then
//
//	kind      1 byte: 'q' request, 'r' reply, 'f' reply carrying a descriptor (FileBody, fd.go)
//	seq       uvarint, net/rpc's sequence number
//	method    uvarint length + bytes
//	error     uvarint length + bytes (replies only; empty on success)
//	encoding  1 byte: 'w' hand-encoded body (Body), 'g' gob
//	body
//
// Gob bodies are the output of one gob.Encoder per connection direction, so
// a type's definition travels once, in the first frame that uses it.

// ErrBadReply matches errors caused by an agent reply the client refused
// (over its size limit, or malformed); the connection is closed.
var ErrBadReply = errors.New("bad agent reply")

const (
	kindRequest = 'q'
	kindReply   = 'r'
	kindFDReply = 'f'
	encWire     = 'w'
	encGob      = 'g'
)

// ClientCodec is the client's side of the wire format, for
// rpc.NewClientWithCodec: it writes requests through a batching writer,
// refuses replies over its limit or malformed (closing the connection), and
// on a Unix socket receives the descriptors replies carry.
type ClientCodec struct {
	*batchWriter // Close closes the connection
	fw           *frameWriter
	fr           *frameReader
	badReply     atomic.Pointer[replyError]
	max          uint64
}

// NewClientCodec returns a codec for conn, which it owns from then on,
// refusing replies over maxReply bytes. Replies carry descriptors only if
// conn is a *net.UnixConn.
func NewClientCodec(conn io.ReadWriteCloser, maxReply uint64) *ClientCodec {
	w := newBatchWriter(conn, Preamble)
	c := &ClientCodec{batchWriter: w, fw: newFrameWriter(w), max: maxReply}
	if uc, ok := conn.(*net.UnixConn); ok {
		fdr := newFDReader(uc)
		c.fr = newFrameReader(fdr, maxReply)
		c.fr.fdr = fdr
	} else {
		c.fr = newFrameReader(conn, maxReply)
	}
	return c
}

// PassesFDs reports whether replies on this connection may carry descriptors.
func (c *ClientCodec) PassesFDs() bool { return c.fr.fdr != nil }

func (c *ClientCodec) WriteRequest(r *rpc.Request, body any) error {
	return c.fw.write(kindRequest, r.Seq, r.ServiceMethod, "", body)
}

func (c *ClientCodec) ReadResponseHeader(r *rpc.Response) error {
	seq, method, errText, err := c.fr.next(kindReply)
	if err != nil {
		if c.fr.fdr != nil {
			c.fr.fdr.close() // the connection is over: net/rpc reads no more
		}
		return c.refuse(err)
	}
	r.Seq, r.ServiceMethod, r.Error = seq, method, errText
	return nil
}

// ReadResponseBody decodes a reply's body. The whole frame has been read,
// so any error is the agent's malformed reply (or a type mismatch between
// versions): the connection is closed either way.
func (c *ClientCodec) ReadResponseBody(body any) error {
	if err := c.fr.readBody(body); err != nil {
		if !errors.Is(err, ErrMalformed) {
			err = fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		return c.refuse(err)
	}
	return nil
}

// refuse closes the connection when a reply was over the limit or
// malformed: the agent misbehaves, and the rest of the stream cannot be
// trusted. It returns err, or the ErrBadReply error that replaces it.
func (c *ClientCodec) refuse(err error) error {
	var tb *tooBigError
	switch {
	case errors.As(err, &tb):
		err = &replyError{fmt.Sprintf("agent reply over the limit of %d bytes; connection closed", c.max)}
	case errors.Is(err, ErrMalformed), errors.Is(err, errFDs):
		err = &replyError{"malformed agent reply; connection closed: " + err.Error()}
	default:
		return err
	}
	c.badReply.CompareAndSwap(nil, err.(*replyError))
	c.Close()
	return err
}

// ReplyErr is the error that ended the connection because of a bad reply, or nil.
func (c *ClientCodec) ReplyErr() error {
	if e := c.badReply.Load(); e != nil {
		return e
	}
	return nil
}

type replyError struct{ msg string }

func (e *replyError) Error() string        { return e.msg }
func (e *replyError) Is(target error) bool { return target == ErrBadReply }

// ServerCodec is the agent's side of the wire format, for
// rpc.Server.ServeCodec or ServeRequest. It refuses requests over its
// limit and connections that do not start with Preamble, and on a Unix
// socket passes the descriptors of replies that carry one (FileBody).
// ReadRequestHeader and ReadRequestBody must not be called concurrently;
// WriteResponse may be.
type ServerCodec struct {
	*batchWriter // Close closes the connection
	fw           *frameWriter
	fr           *frameReader
	greeted      bool
}

// NewServerCodec returns a codec serving conn, which it owns from then on,
// refusing requests over maxRequest bytes.
func NewServerCodec(conn io.ReadWriteCloser, maxRequest uint64) *ServerCodec {
	w := newBatchWriter(conn, "")
	return &ServerCodec{batchWriter: w, fw: newFrameWriter(w), fr: newFrameReader(conn, maxRequest)}
}

// ErrPreamble reports a client that did not start with Preamble: another
// version of the protocol, or not octo at all.
var ErrPreamble = errors.New("client does not speak " + Preamble[:len(Preamble)-1])

func (c *ServerCodec) ReadRequestHeader(r *rpc.Request) error {
	if !c.greeted {
		var p [len(Preamble)]byte
		if _, err := io.ReadFull(c.fr.br, p[:]); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return ErrPreamble
			}
			return err
		}
		if string(p[:]) != Preamble {
			return ErrPreamble
		}
		c.greeted = true
	}
	seq, method, _, err := c.fr.next(kindRequest)
	if err != nil {
		return err
	}
	r.Seq, r.ServiceMethod = seq, method
	return nil
}

func (c *ServerCodec) ReadRequestBody(body any) error { return c.fr.readBody(body) }

// Close sends the replies still buffered, then closes the connection.
// net/rpc closes a server codec once every call has written its reply, and
// those replies must reach the client, as with net/rpc's own codec; a
// client that does not read gets flushTimeout to do so.
func (c *ServerCodec) Close() error { return c.closeFlushing(flushTimeout) }

// flushTimeout bounds the last flush of a closing server connection.
const flushTimeout = 5 * time.Second

func (c *ServerCodec) WriteResponse(r *rpc.Response, body any) error {
	return c.fw.write(kindReply, r.Seq, r.ServiceMethod, r.Error, body)
}
