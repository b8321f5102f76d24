package agentrpc

import (
	"bufio"
	"encoding/gob"
	"io"
	"net/rpc"
	"sync/atomic"
)

// clientCodec is net/rpc's gob client codec (the same wire format) that
// flushes a request only when no other call of this client is queued to be
// written: under concurrency, requests that pile up behind one another leave
// in one write, and a lone request is written at once as before.
type clientCodec struct {
	rwc    io.ReadWriteCloser
	dec    *gob.Decoder
	enc    *gob.Encoder
	encBuf *bufio.Writer

	// queued counts calls between Client.Call's announcement and their
	// WriteRequest. net/rpc serialises WriteRequest, and a call that
	// announced itself always reaches WriteRequest unless the client is
	// shut down, so the last of a queue sees zero and flushes for all.
	queued atomic.Int64
}

func newClientCodec(conn io.ReadWriteCloser) *clientCodec {
	buf := bufio.NewWriter(conn)
	return &clientCodec{rwc: conn, dec: gob.NewDecoder(conn), enc: gob.NewEncoder(buf), encBuf: buf}
}

// announce tells the codec that a call is about to be written.
func (c *clientCodec) announce() { c.queued.Add(1) }

func (c *clientCodec) WriteRequest(r *rpc.Request, body any) error {
	last := c.queued.Add(-1) <= 0
	err := c.enc.Encode(r)
	if err == nil {
		err = c.enc.Encode(body)
	}
	if !last {
		return err // the next queued call flushes this one with its own
	}
	if ferr := c.encBuf.Flush(); err == nil {
		err = ferr
	}
	return err
}

func (c *clientCodec) ReadResponseHeader(r *rpc.Response) error { return c.dec.Decode(r) }

func (c *clientCodec) ReadResponseBody(body any) error { return c.dec.Decode(body) }

func (c *clientCodec) Close() error { return c.rwc.Close() }
