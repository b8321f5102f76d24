package agentrpc

import (
	"io"
	"net"
	"net/rpc"

	"octo/internal/agentrpc/wire"
)

// Preamble opens every client connection (see package wire).
const Preamble = wire.Preamble

// MaxRequestSize bounds one request frame: the largest carry a
// File.WriteAt chunk or a File.Write of MaxWriteSize bytes.
const MaxRequestSize = MaxWriteSize + 1<<20

// MaxReplySize bounds one reply frame from an agent. The largest legitimate
// replies, a File.Read chunk or a long directory listing, are far below it;
// an agent sending more is broken or hostile, and its connection is closed
// rather than let it exhaust the control plane's memory.
const MaxReplySize = MaxWriteSize + 1<<20

// ErrBadReply matches errors caused by an agent reply the client refused
// (over MaxReplySize, or malformed); the connection is closed.
var ErrBadReply = wire.ErrBadReply

// ErrPreamble reports a client that did not start with Preamble: another
// version of the protocol, or not octo at all.
var ErrPreamble = wire.ErrPreamble

// NewServerCodec returns the agent's codec for conn, which it owns from
// then on, refusing requests over MaxRequestSize.
func NewServerCodec(conn io.ReadWriteCloser) *wire.ServerCodec {
	return wire.NewServerCodec(conn, MaxRequestSize)
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
