package agentrpc

import (
	"bufio"
	"encoding/gob"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
)

// BatchWriter writes net/rpc's gob messages (a header, then a body) to a
// connection from one flusher goroutine: messages encoded while it is busy
// or waiting for its turn leave together in one write, and a lone message
// leaves as soon as the flusher runs. Both ends of the protocol write
// through it (the client its requests, the agent its replies); the wire
// format is net/rpc's own.
type BatchWriter struct {
	rwc io.ReadWriteCloser

	mu     sync.Mutex // guards enc and buf
	enc    *gob.Encoder
	buf    *bufio.Writer
	closed atomic.Bool

	kick chan struct{} // capacity 1: buf holds messages to flush
	done chan struct{} // closed by Close
}

// NewBatchWriter returns a writer for rwc and starts its flusher, which runs
// until Close.
func NewBatchWriter(rwc io.ReadWriteCloser) *BatchWriter {
	buf := bufio.NewWriterSize(rwc, 64<<10)
	w := &BatchWriter{rwc: rwc, enc: gob.NewEncoder(buf), buf: buf,
		kick: make(chan struct{}, 1), done: make(chan struct{})}
	go w.flusher()
	return w
}

// Write encodes header and body and schedules them to be sent. If gob cannot
// encode them (a bug), what is complete is sent and the connection closed,
// as net/rpc's own codec does: the stream may hold half a message.
func (w *BatchWriter) Write(header, body any) error {
	w.mu.Lock()
	err := w.enc.Encode(header)
	if err == nil {
		err = w.enc.Encode(body)
	}
	if err != nil {
		w.buf.Flush()
		w.mu.Unlock()
		w.Close()
		return err
	}
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default: // the flusher has yet to take the previous kick: it sends this one too
	}
	return nil
}

// flusher writes encoded messages until Close. It yields once before each
// write so that calls already running may add theirs.
func (w *BatchWriter) flusher() {
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

// Close closes the connection once, without waiting for a flush in
// progress (which the close ends).
func (w *BatchWriter) Close() error {
	if !w.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(w.done)
	return w.rwc.Close()
}
