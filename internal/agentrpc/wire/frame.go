package wire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"os"
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
	body Reader    // the current frame's body
	fdr  *fdReader // nil: the connection cannot pass descriptors
	fd   *os.File  // the descriptor passed with the current frame

	methods map[string]string // interned method names

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
	r := Reader{b: buf}
	switch {
	case len(r.b) > 0 && r.b[0] == kind:
	case len(r.b) > 0 && r.b[0] == kindFDReply && kind == kindReply && f.fdr != nil:
		if f.fd, err = f.fdr.take(); err != nil {
			return 0, "", "", err
		}
	default:
		return 0, "", "", fmt.Errorf("%w: frame of kind %q, want %q", ErrMalformed, r.b[:min(len(r.b), 1)], kind)
	}
	r.b = r.b[1:]
	seq = r.Uvarint()
	method = f.intern(r.Next())
	if kind == kindReply {
		errText = r.String()
	}
	if r.err != nil {
		f.dropFD()
		return 0, "", "", r.err
	}
	f.body = Reader{b: r.b, alias: alias}
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
	defer func() { f.body = Reader{}; f.dropFD() }()
	if len(r.b) == 0 {
		return fmt.Errorf("%w: no body", ErrMalformed)
	}
	enc := r.b[0]
	r.b = r.b[1:]
	switch enc {
	case encWire:
		if body == nil {
			return nil
		}
		wb, ok := body.(Body)
		if !ok {
			return fmt.Errorf("%w: hand-encoded body for %T", ErrMalformed, body)
		}
		wb.ReadWire(r)
		if err := r.Done(); err != nil {
			return err
		}
		if fb, ok := body.(FileBody); ok && f.fd != nil {
			fb.SetPassedFile(f.fd)
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
			return fmt.Errorf("%w: %d bytes after the gob body", ErrMalformed, f.gobIn.Len())
		}
		return nil
	}
	return fmt.Errorf("%w: body encoding %q", ErrMalformed, enc)
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
	b = AppendString(b, method)
	if kind == kindReply {
		b = AppendString(b, errText)
	}
	if fb, ok := body.(FileBody); ok && kind == kindReply && fb.PassedFile() != nil {
		// The descriptor leaves with the frame; the body no longer holds it.
		file := fb.PassedFile()
		fb.SetPassedFile(nil)
		b[0] = kindFDReply
		b = fb.AppendWire(append(b, encWire))
		return fw.out.endFD(append(b, fb.WireTail()...), file)
	}
	if wb, ok := body.(Body); ok {
		b = wb.AppendWire(append(b, encWire))
		tail := wb.WireTail()
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

// maxMethods bounds the method names a connection's reader keeps.
const maxMethods = 64

// intern returns b as a string, without allocating for method names the
// connection has seen before.
func (f *frameReader) intern(b []byte) string {
	if s, ok := f.methods[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(f.methods) < maxMethods {
		if f.methods == nil {
			f.methods = map[string]string{}
		}
		f.methods[s] = s
	}
	return s
}
