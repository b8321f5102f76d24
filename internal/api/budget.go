package api

import "sync"

// budget is a weighted semaphore of bytes that never waits: a request
// that does not fit is refused (429), so that a burst of uploads cannot hold
// more than the budget in the control plane's memory, and refused clients
// learn it at once instead of holding connections while they queue.
type budget struct {
	mu   sync.Mutex
	max  int64
	used int64
}

// tryTake reserves n bytes and reports whether they fit.
func (b *budget) tryTake(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n < 0 || b.used+n > b.max {
		return false
	}
	b.used += n
	return true
}

// give returns n reserved bytes.
func (b *budget) give(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
}

// inUse reports the bytes reserved.
func (b *budget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}
