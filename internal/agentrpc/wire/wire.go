// Package wire is the agent protocol's transport: the frames that carry
// net/rpc requests and replies over a connection, the batching writer, the
// version preamble, descriptor passing on Unix sockets, and the field
// encoding of hand-encoded bodies. It knows nothing of the protocol's
// types (package agentrpc), which implement Body and FileBody.
package wire

import (
	"encoding/binary"
	"errors"
	"math"
	"os"
	"time"
)

// Preamble opens every client connection: an agent speaking another version
// of the protocol closes the connection instead of misreading it.
const Preamble = "octo-agentrpc/3\n"

// Body is a body type with a hand-written encoding, a sequence of fields
// in declaration order but for bulk data, which goes last: integers as
// varints, strings and byte slices as a uvarint length and the bytes,
// booleans as one byte, times as a flag byte then Unix seconds and
// nanoseconds. AppendWire appends everything up to and including the bulk
// field's length, and WireTail returns the bulk data, which a frame
// carries last and the writer sends without copying it when it is large.
// Every other body travels as gob.
type Body interface {
	AppendWire(b []byte) []byte
	WireTail() []byte
	ReadWire(r *Reader)
}

// FileBody is a Body that may carry an open file beside its frame (on a
// Unix socket, SCM_RIGHTS). The writer sends PassedFile, if not nil, and
// closes its own copy; the reader hands the received file to SetPassedFile.
type FileBody interface {
	Body
	PassedFile() *os.File
	SetPassedFile(*os.File)
}

// ErrMalformed reports a body that ended early, had bytes left over or
// held an impossible value.
var ErrMalformed = errors.New("malformed message body")

// Reader decodes fields. The first error sticks; reads after it return
// zero values.
type Reader struct {
	b   []byte
	err error
	// alias lets byte slices point into b instead of being copied: b is
	// then a buffer of its own, not one the codec reuses.
	alias bool
}

// NewReader returns a reader of b whose byte slices are copies.
func NewReader(b []byte) Reader { return Reader{b: b} }

func (r *Reader) fail() {
	if r.err == nil {
		r.err = ErrMalformed
	}
	r.b = nil
}

// Uvarint reads an unsigned varint.
func (r *Reader) Uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

// Varint reads a signed varint.
func (r *Reader) Varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

// Int reads a signed varint that must fit an int.
func (r *Reader) Int() int {
	v := r.Varint()
	if v < math.MinInt || v > math.MaxInt {
		r.fail()
		return 0
	}
	return int(v)
}

// Uint32 reads an unsigned varint that must fit a uint32.
func (r *Reader) Uint32() uint32 {
	v := r.Uvarint()
	if v > math.MaxUint32 {
		r.fail()
		return 0
	}
	return uint32(v)
}

// Next returns the next length-prefixed field, pointing into the buffer.
func (r *Reader) Next() []byte {
	n := r.Uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return nil
	}
	f := r.b[:n:n]
	r.b = r.b[n:]
	return f
}

// String reads a length-prefixed string.
func (r *Reader) String() string { return string(r.Next()) }

// Bytes reads a length-prefixed byte slice (nil when empty).
func (r *Reader) Bytes() []byte {
	f := r.Next()
	if len(f) == 0 {
		return nil
	}
	if r.alias {
		return f
	}
	return append([]byte(nil), f...)
}

// Bool reads a boolean byte.
func (r *Reader) Bool() bool {
	if len(r.b) == 0 || r.b[0] > 1 {
		r.fail()
		return false
	}
	v := r.b[0] == 1
	r.b = r.b[1:]
	return v
}

// Time reads a time.
func (r *Reader) Time() time.Time {
	if !r.Bool() {
		return time.Time{}
	}
	sec, nsec := r.Varint(), r.Varint()
	if nsec < 0 || nsec >= 1e9 {
		r.fail()
		return time.Time{}
	}
	return time.Unix(sec, nsec)
}

// Done reports the first error, or ErrMalformed if bytes are left over.
func (r *Reader) Done() error {
	if r.err == nil && len(r.b) != 0 {
		r.err = ErrMalformed
	}
	return r.err
}

// AppendString appends a length-prefixed string.
func AppendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// AppendBool appends a boolean byte.
func AppendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// AppendTime appends a time.
func AppendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return AppendBool(b, false)
	}
	b = AppendBool(b, true)
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendVarint(b, int64(t.Nanosecond()))
}
