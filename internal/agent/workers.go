package agent

import (
	"io"
	"net/rpc"
	"sync"
	"sync/atomic"
)

// maxIdleWorkers bounds the workers a connection keeps waiting to read.
const maxIdleWorkers = 8

// serveWorkers serves srv on codec until the connection ends, then waits for
// the calls in progress and closes codec, as rpc.Server.ServeCodec does.
//
// Unlike ServeCodec, which starts a goroutine for every request, it keeps
// workers: one at a time reads a request (the codec's read lock), hands
// reading to an idle worker, starting one when none is idle, and runs the
// call itself. A worker's stack has grown to what calls need, so a call
// costs neither a new goroutine nor growing its stack, which showed in the
// profile of small reads. Calls still run concurrently: a long poll holds
// only its own worker.
func serveWorkers(srv *rpc.Server, codec *serverCodec) {
	newWorkerPool(srv, codec).serve()
}

func newWorkerPool(srv *rpc.Server, codec *serverCodec) *workerPool {
	p := &workerPool{srv: srv, codec: codec}
	codec.onRead = p.readDone
	return p
}

func (p *workerPool) serve() {
	p.start()
	p.wg.Wait()
	p.codec.Close()
}

type workerPool struct {
	srv   *rpc.Server
	codec *serverCodec
	wg    sync.WaitGroup

	mu      sync.Mutex
	idle    int // workers not running a call
	workers int // workers running
}

// start starts a worker, counted idle until it has read a request.
func (p *workerPool) start() {
	p.mu.Lock()
	p.idle++
	p.workers++
	p.mu.Unlock()
	p.wg.Add(1)
	go p.work()
}

func (p *workerPool) work() {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		p.workers--
		p.mu.Unlock()
	}()
	for {
		// ServeRequest returns an error both for a request it answered
		// with an error (the connection goes on) and for the end of the
		// connection, which the codec remembers.
		p.srv.ServeRequest(p.codec)
		if p.codec.rl.ended.Load() {
			return
		}
		p.mu.Lock()
		if p.idle >= maxIdleWorkers {
			p.mu.Unlock()
			return
		}
		p.idle++
		p.mu.Unlock()
	}
}

// readDone is called by the worker that has just read a whole request,
// before it runs the call: it is no longer idle, and if no other worker is,
// one starts, so that the next request is read while this one runs.
func (p *workerPool) readDone() {
	p.mu.Lock()
	p.idle--
	none := p.idle == 0
	p.mu.Unlock()
	if none {
		p.start()
	}
}

// readLock serializes reading requests among a connection's workers: a
// reader holds it from a request's header to the end of its body. Once a
// header could not be read, the connection is over and every later read
// fails at once.
type readLock struct {
	mu    sync.Mutex
	ended atomic.Bool
	err   error // what ended it, set before ended
}

// lock takes the read lock, or returns io.EOF without it once the
// connection has ended.
func (l *readLock) lock() error {
	l.mu.Lock()
	if l.ended.Load() {
		l.mu.Unlock()
		return io.EOF
	}
	return nil
}

func (l *readLock) unlock() { l.mu.Unlock() }

// end marks the connection over because of err and releases the lock.
func (l *readLock) end(err error) {
	l.err = err
	l.ended.Store(true)
	l.mu.Unlock()
}
