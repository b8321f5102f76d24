package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// batchWriter writes frames to a connection from one flusher goroutine:
// frames built while it is busy or waiting for its turn leave together in
// one write, and a lone frame leaves as soon as the flusher runs. Both ends
// of the protocol write through it (the client its requests, the agent its
// replies).
type batchWriter struct {
	rwc io.ReadWriteCloser
	uc  *net.UnixConn // rwc, when it can pass descriptors

	mu      sync.Mutex // guards buf, scratch and length, and orders frames
	buf     *bufio.Writer
	scratch []byte                      // reused to build frames
	length  [binary.MaxVarintLen64]byte // a frame's length prefix, without an allocation
	closed  atomic.Bool

	kick chan struct{} // capacity 1: buf holds frames to flush
	done chan struct{} // closed by Close
}

// newBatchWriter returns a writer for rwc that first sends preamble, and
// starts its flusher, which runs until Close.
func newBatchWriter(rwc io.ReadWriteCloser, preamble string) *batchWriter {
	buf := bufio.NewWriterSize(rwc, 64<<10)
	buf.WriteString(preamble)
	w := &batchWriter{rwc: rwc, buf: buf, kick: make(chan struct{}, 1), done: make(chan struct{})}
	w.uc, _ = rwc.(*net.UnixConn)
	go w.flusher()
	return w
}

// maxScratch is the largest frame buffer kept for reuse.
const maxScratch = 256 << 10

// begin locks the writer and returns its scratch buffer, empty, to build a
// frame in; end must follow. Frames thus leave in the order they were built
// (gob's type definitions depend on it).
func (w *batchWriter) begin() []byte {
	w.mu.Lock()
	return w.scratch[:0]
}

// end sends the frame built in b, then tail (bulk data, sent from where it
// lies), unlocks the writer and schedules a flush. If err is set, the frame
// could not be built (a body gob cannot encode: a bug): nothing of it is
// sent and the connection is closed, as net/rpc's own codec does.
func (w *batchWriter) end(b, tail []byte, err error) error {
	if err != nil {
		w.mu.Unlock()
		w.Close()
		return err
	}
	w.buf.Write(binary.AppendUvarint(w.length[:0], uint64(len(b)+len(tail))))
	w.buf.Write(b)
	w.buf.Write(tail) // a large tail goes straight to the connection
	if cap(b) <= maxScratch {
		w.scratch = b[:0]
	} else {
		w.scratch = nil
	}
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default: // the flusher has yet to take the previous kick: it sends this one too
	}
	return nil
}

// endFD is end for a frame that carries f's descriptor: what is buffered
// leaves first, then the frame in one sendmsg with the descriptor. f is
// closed either way (the peer holds its own copy once sent).
func (w *batchWriter) endFD(b []byte, f *os.File) error {
	defer f.Close()
	if w.uc == nil {
		w.mu.Unlock()
		w.Close()
		return errors.New("descriptor reply on a connection that cannot pass descriptors")
	}
	var n [binary.MaxVarintLen64]byte
	frame := append(binary.AppendUvarint(n[:0], uint64(len(b))), b...)
	err := w.buf.Flush()
	if err == nil {
		err = sendFD(w.uc, frame, f)
	}
	if cap(b) <= maxScratch {
		w.scratch = b[:0]
	}
	w.mu.Unlock()
	if err != nil {
		w.Close()
	}
	return err
}

// flusher writes encoded messages until Close. It yields once before each
// write so that calls already running may add theirs.
func (w *batchWriter) flusher() {
	for {
		select {
		case <-w.done:
			return
		case <-w.kick:
		}
		runtime.Gosched()
		w.mu.Lock()
		err := w.buf.Flush()
		w.mu.Unlock()
		if err != nil {
			w.Close() // the reading side then fails, and net/rpc ends the connection
			return
		}
	}
}

// closeFlushing writes what is buffered, giving the peer timeout to take
// it, then closes the connection.
func (w *batchWriter) closeFlushing(timeout time.Duration) error {
	if dl, ok := w.rwc.(interface{ SetWriteDeadline(time.Time) error }); ok {
		dl.SetWriteDeadline(time.Now().Add(timeout))
	}
	w.mu.Lock()
	if !w.closed.Load() {
		w.buf.Flush()
	}
	w.mu.Unlock()
	return w.Close()
}

// Close closes the connection once, without waiting for a flush in
// progress (which the close ends).
func (w *batchWriter) Close() error {
	if !w.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(w.done)
	return w.rwc.Close()
}
