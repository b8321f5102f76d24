package agentrpc

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"net"
	"net/rpc"
	"os"
	"sync/atomic"
	"time"
)

// The wire format. A client starts its connection with Preamble; then each
// request and reply is a frame: a uvarint length, then
//
//	kind      1 byte: 'q' request, 'r' reply, 'f' reply carrying a descriptor (fd_linux.go)
//	seq       uvarint, net/rpc's sequence number
//	method    uvarint length + bytes
//	error     uvarint length + bytes (replies only; empty on success)
//	encoding  1 byte: 'w' hand-encoded body (wire.go), 'g' gob
//	body
//
// Gob bodies are the output of one gob.Encoder per connection direction, so
// a type's definition travels once, in the first frame that uses it.

// Preamble opens every client connection: an agent speaking another version
// of the protocol closes the connection instead of misreading it.
const Preamble = "octo-agentrpc/2\n"

// MaxRequestSize bounds one request frame: the largest, File.Write, carries
// MaxWriteSize bytes of data.
const MaxRequestSize = MaxWriteSize + 1<<20

// MaxReplySize bounds one reply frame from an agent. The largest legitimate
// replies, a File.Read chunk or a long directory listing, are far below it;
// an agent sending more is broken or hostile, and its connection is closed
// rather than let it exhaust the control plane's memory.
const MaxReplySize = MaxWriteSize + 1<<20

// ErrBadReply matches errors caused by an agent reply the client refused
// (over MaxReplySize, or malformed); the connection is closed.
var ErrBadReply = errors.New("bad agent reply")

const (
	kindRequest = 'q'
	kindReply   = 'r'
	kindFDReply = 'f'
	encWire     = 'w'
	encGob      = 'g'
)

// reuseFrame is the largest frame read into the reader's reused buffer.
// Bigger frames get a buffer of their own, into which their bodies' byte
// slices point instead of being copied.
const reuseFrame = 64 << 10

// frameReader reads frames from a connection.
type frameReader struct {
	br   *bufio.Reader
	max  uint64
	buf  []byte
	body wireReader // the current frame's body
	fdr  *fdReader  // nil: the connection cannot pass descriptors
	fd   *os.File   // the descriptor passed with the current frame

	gobIn  *bytes.Reader
	gobDec *gob.Decoder
}

func newFrameReader(r io.Reader, max uint64) *frameReader {
	in := bytes.NewReader(nil)
	return &frameReader{br: bufio.NewReaderSize(r, 64<<10), max: max, gobIn: in, gobDec: gob.NewDecoder(in)}
}

// tooBigError is returned by next for a frame over the reader's limit.
type tooBigError struct{ n, max uint64 }

func (e *tooBigError) Error() string {
	return fmt.Sprintf("message of %d bytes is over the limit of %d bytes", e.n, e.max)
}

// next reads a frame of the given kind and returns its header.
func (f *frameReader) next(kind byte) (seq uint64, method, errText string, err error) {
	n, err := binary.ReadUvarint(f.br) // io.EOF between frames: the peer hung up
	if err != nil {
		return 0, "", "", err
	}
	if n > f.max {
		return 0, "", "", &tooBigError{n, f.max}
	}
	var buf []byte
	alias := n > reuseFrame
	if alias {
		buf, err = readGrowing(f.br, n)
	} else {
		if uint64(cap(f.buf)) < n {
			f.buf = make([]byte, max(n, 4<<10))
		}
		buf = f.buf[:n]
		_, err = io.ReadFull(f.br, buf)
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, "", "", err
	}
	r := wireReader{b: buf}
	switch {
	case len(r.b) > 0 && r.b[0] == kind:
	case len(r.b) > 0 && r.b[0] == kindFDReply && kind == kindReply && f.fdr != nil:
		if f.fd, err = f.fdr.take(); err != nil {
			return 0, "", "", err
		}
	default:
		return 0, "", "", fmt.Errorf("%w: frame of kind %q, want %q", errBadWire, r.b[:min(len(r.b), 1)], kind)
	}
	r.b = r.b[1:]
	seq = r.uvarint()
	method = internMethod(r.next())
	if kind == kindReply {
		errText = r.string()
	}
	if r.err != nil {
		f.dropFD()
		return 0, "", "", r.err
	}
	f.body = wireReader{b: r.b, alias: alias}
	return seq, method, errText, nil
}

// allocAhead is how much of a frame is allocated before its bytes arrive:
// beyond it, the buffer grows as they do, so that a peer announcing a big
// frame and sending little pins little memory.
const allocAhead = 2 << 20

// readGrowing reads n bytes from r into a buffer of their own.
func readGrowing(r io.Reader, n uint64) ([]byte, error) {
	buf := make([]byte, 0, min(n, allocAhead))
	for uint64(len(buf)) < n {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(n, 2*uint64(cap(buf))))
			copy(grown, buf)
			buf = grown
		}
		m, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err != nil && uint64(len(buf)) < n {
			return nil, err
		}
	}
	return buf, nil
}

// dropFD closes the current frame's descriptor, if it has one.
func (f *frameReader) dropFD() {
	if f.fd != nil {
		f.fd.Close()
		f.fd = nil
	}
}

// readBody decodes the current frame's body into body (nil discards it).
// A descriptor that came with the frame goes to a fileBody; any other
// body, or none, gets it closed.
func (f *frameReader) readBody(body any) error {
	r := &f.body // not a copy: a local passed to readWire would escape
	defer func() { f.body = wireReader{}; f.dropFD() }()
	if len(r.b) == 0 {
		return fmt.Errorf("%w: no body", errBadWire)
	}
	enc := r.b[0]
	r.b = r.b[1:]
	switch enc {
	case encWire:
		if body == nil {
			return nil
		}
		wb, ok := body.(wireBody)
		if !ok {
			return fmt.Errorf("%w: hand-encoded body for %T", errBadWire, body)
		}
		wb.readWire(r)
		if err := r.done(); err != nil {
			return err
		}
		if fb, ok := body.(fileBody); ok && f.fd != nil {
			fb.setPassedFile(f.fd)
			f.fd = nil
		}
		return nil
	case encGob:
		// Even a discarded gob body is decoded: it may define types.
		f.gobIn.Reset(r.b)
		if err := f.gobDec.Decode(body); err != nil {
			return err
		}
		if f.gobIn.Len() != 0 {
			return fmt.Errorf("%w: %d bytes after the gob body", errBadWire, f.gobIn.Len())
		}
		return nil
	}
	return fmt.Errorf("%w: body encoding %q", errBadWire, enc)
}

// frameWriter builds frames; its gob encoder runs only under the
// batchWriter's lock (between begin and end).
type frameWriter struct {
	out    *batchWriter
	gobOut appendWriter
	gobEnc *gob.Encoder
}

func newFrameWriter(w *batchWriter) *frameWriter {
	fw := &frameWriter{out: w}
	fw.gobEnc = gob.NewEncoder(&fw.gobOut)
	return fw
}

// appendWriter appends what gob writes to b.
type appendWriter struct{ b []byte }

func (a *appendWriter) Write(p []byte) (int, error) {
	a.b = append(a.b, p...)
	return len(p), nil
}

func (fw *frameWriter) write(kind byte, seq uint64, method string, errText string, body any) error {
	b := fw.out.begin()
	b = append(b, kind)
	b = binary.AppendUvarint(b, seq)
	b = appendString(b, method)
	if kind == kindReply {
		b = appendString(b, errText)
	}
	if fb, ok := body.(fileBody); ok && kind == kindReply && fb.passedFile() != nil {
		// The descriptor leaves with the frame; the body no longer holds it.
		file := fb.passedFile()
		fb.setPassedFile(nil)
		b[0] = kindFDReply
		b = fb.appendWire(append(b, encWire))
		return fw.out.endFD(append(b, fb.wireTail()...), file)
	}
	if wb, ok := body.(wireBody); ok {
		b = wb.appendWire(append(b, encWire))
		tail := wb.wireTail()
		if len(tail) < copyTail {
			return fw.out.end(append(b, tail...), nil, nil)
		}
		return fw.out.end(b, tail, nil)
	}
	fw.gobOut.b = append(b, encGob)
	err := fw.gobEnc.Encode(body)
	b, fw.gobOut.b = fw.gobOut.b, nil
	return fw.out.end(b, nil, err)
}

// copyTail is the size from which a body's bulk data is written from where
// it is instead of being copied into the frame.
const copyTail = 32 << 10

// internMethod returns b as a string, without allocating for the
// protocol's method names.
func internMethod(b []byte) string {
	if s, ok := methodNames[string(b)]; ok {
		return s
	}
	return string(b)
}

var methodNames = func() map[string]string {
	m := map[string]string{}
	for _, s := range []string{MethodInfo, MethodSessionStart, MethodSessionList, MethodSessionGet,
		MethodSessionStop, MethodSessionSignal, MethodSessionResize, MethodSessionInput,
		MethodSessionClose, MethodSessionOutput, MethodFileStat, MethodFileList, MethodFileRead,
		MethodFileWrite, MethodFileMkdir, MethodFileRemove, MethodFileRename, MethodFileOpen,
		MethodFileCreate, MethodFileWriteAt, MethodFileCommit, MethodFileAbort} {
		m[s] = s
	}
	return m
}()

// clientCodec is the client's side of the wire format: it writes requests
// through a batchWriter and refuses replies over MaxReplySize.
type clientCodec struct {
	*batchWriter // Close closes the connection
	fw           *frameWriter
	fr           *frameReader
	badReply     atomic.Pointer[replyError]
}

func newClientCodec(conn io.ReadWriteCloser) *clientCodec {
	w := newBatchWriter(conn, Preamble)
	if uc, ok := conn.(*net.UnixConn); ok {
		fdr := newFDReader(uc)
		fr := newFrameReader(fdr, MaxReplySize)
		fr.fdr = fdr
		return &clientCodec{batchWriter: w, fw: newFrameWriter(w), fr: fr}
	}
	return &clientCodec{batchWriter: w, fw: newFrameWriter(w), fr: newFrameReader(conn, MaxReplySize)}
}

// passesFDs reports whether replies on this connection may carry descriptors.
func (c *clientCodec) passesFDs() bool { return c.fr.fdr != nil }

func (c *clientCodec) WriteRequest(r *rpc.Request, body any) error {
	return c.fw.write(kindRequest, r.Seq, r.ServiceMethod, "", body)
}

func (c *clientCodec) ReadResponseHeader(r *rpc.Response) error {
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
func (c *clientCodec) ReadResponseBody(body any) error {
	if err := c.fr.readBody(body); err != nil {
		if !errors.Is(err, errBadWire) {
			err = fmt.Errorf("%w: %w", errBadWire, err)
		}
		return c.refuse(err)
	}
	return nil
}

// refuse closes the connection when a reply was over the limit or
// malformed: the agent misbehaves, and the rest of the stream cannot be
// trusted. It returns err, or the ErrBadReply error that replaces it.
func (c *clientCodec) refuse(err error) error {
	var tb *tooBigError
	switch {
	case errors.As(err, &tb):
		err = &replyError{fmt.Sprintf("agent reply over the limit of %d bytes; connection closed", MaxReplySize)}
	case errors.Is(err, errBadWire), errors.Is(err, errFDs):
		err = &replyError{"malformed agent reply; connection closed: " + err.Error()}
	default:
		return err
	}
	c.badReply.CompareAndSwap(nil, err.(*replyError))
	c.Close()
	return err
}

// replyErr is the error that ended the connection because of a bad reply, or nil.
func (c *clientCodec) replyErr() error {
	if e := c.badReply.Load(); e != nil {
		return e
	}
	return nil
}

type replyError struct{ msg string }

func (e *replyError) Error() string        { return e.msg }
func (e *replyError) Is(target error) bool { return target == ErrBadReply }

// ServerCodec is the agent's side of the wire format, for
// rpc.Server.ServeCodec or ServeRequest. It refuses requests over
// MaxRequestSize and connections that do not start with Preamble.
// ReadRequestHeader and ReadRequestBody must not be called concurrently;
// WriteResponse may be.
type ServerCodec struct {
	*batchWriter // Close closes the connection
	fw           *frameWriter
	fr           *frameReader
	greeted      bool
}

// NewServerCodec returns a codec serving conn, which it owns from then on.
func NewServerCodec(conn io.ReadWriteCloser) *ServerCodec {
	w := newBatchWriter(conn, "")
	return &ServerCodec{batchWriter: w, fw: newFrameWriter(w), fr: newFrameReader(conn, MaxRequestSize)}
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

// ServeConn serves srv on conn with the agent's wire format until the
// client hangs up, as rpc.Server.ServeConn does with gob.
func ServeConn(srv *rpc.Server, conn io.ReadWriteCloser) {
	srv.ServeCodec(NewServerCodec(conn))
}

// Accept serves srv on every connection ln accepts until ln is closed, as
// rpc.Server.Accept does with gob.
func Accept(srv *rpc.Server, ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go ServeConn(srv, conn)
	}
}
