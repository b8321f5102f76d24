package agentrpc

import "encoding/binary"

// Hand encodings of the transfer calls (see wire.go). The descriptor an
// OpenReply or Upload carries is not part of its body: it travels beside
// the frame (fd_linux.go).

func (q *OpenRequest) appendWire(b []byte) []byte {
	b = appendString(b, q.Path)
	b = binary.AppendVarint(b, int64(q.Inline))
	return appendBool(b, q.FD)
}

func (q *OpenRequest) wireTail() []byte { return nil }

func (q *OpenRequest) readWire(r *wireReader) {
	q.Path, q.Inline, q.FD = r.string(), r.int(), r.bool()
}

func (o *OpenReply) appendWire(b []byte) []byte {
	b = o.Info.appendWire(b)
	b = appendBool(b, o.Inline)
	return binary.AppendUvarint(b, uint64(len(o.Data)))
}

func (o *OpenReply) wireTail() []byte { return o.Data }

func (o *OpenReply) readWire(r *wireReader) {
	o.Info.readWire(r)
	o.Inline = r.bool()
	o.Data = r.bytes()
}

func (u *Upload) appendWire(b []byte) []byte { return appendString(b, u.ID) }

func (u *Upload) wireTail() []byte { return nil }

func (u *Upload) readWire(r *wireReader) { u.ID = r.string() }

func (q *ChunkRequest) appendWire(b []byte) []byte {
	b = appendString(b, q.ID)
	b = binary.AppendVarint(b, q.Offset)
	return binary.AppendUvarint(b, uint64(len(q.Data)))
}

func (q *ChunkRequest) wireTail() []byte { return q.Data }

func (q *ChunkRequest) readWire(r *wireReader) {
	q.ID, q.Offset = r.string(), r.varint()
	q.Data = r.bytes()
}
