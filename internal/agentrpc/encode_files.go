package agentrpc

import (
	"encoding/binary"
	"os"

	"octo/internal/agentrpc/wire"
)

// Hand encodings of the transfer calls (see encode.go). The descriptor an
// OpenReply or Upload carries is not part of its body: it travels beside
// the frame (wire.FileBody).

func (q *OpenRequest) AppendWire(b []byte) []byte {
	b = wire.AppendString(b, q.Path)
	b = binary.AppendVarint(b, int64(q.Inline))
	return wire.AppendBool(b, q.FD)
}

func (q *OpenRequest) WireTail() []byte { return nil }

func (q *OpenRequest) ReadWire(r *wire.Reader) {
	q.Path, q.Inline, q.FD = r.String(), r.Int(), r.Bool()
}

func (o *OpenReply) AppendWire(b []byte) []byte {
	b = o.Info.AppendWire(b)
	b = wire.AppendBool(b, o.Inline)
	return binary.AppendUvarint(b, uint64(len(o.Data)))
}

func (o *OpenReply) WireTail() []byte { return o.Data }

func (o *OpenReply) ReadWire(r *wire.Reader) {
	o.Info.ReadWire(r)
	o.Inline = r.Bool()
	o.Data = r.Bytes()
}

func (u *Upload) AppendWire(b []byte) []byte { return wire.AppendString(b, u.ID) }

func (u *Upload) WireTail() []byte { return nil }

func (u *Upload) ReadWire(r *wire.Reader) { u.ID = r.String() }

// PassedFile and SetPassedFile implement wire.FileBody.
func (o *OpenReply) PassedFile() *os.File     { return o.File }
func (o *OpenReply) SetPassedFile(f *os.File) { o.File = f }
func (u *Upload) PassedFile() *os.File        { return u.File }
func (u *Upload) SetPassedFile(f *os.File)    { u.File = f }
