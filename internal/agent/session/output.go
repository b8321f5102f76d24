package session

import (
	"encoding/binary"
	"errors"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// outHeader is the size of an output file's header: the total number of
// bytes ever written, little-endian. The kept bytes follow as a ring of
// cap bytes: absolute offset o lives at outHeader + o%cap.
const outHeader = 8

var _ io.Writer = (*outputFile)(nil)

// outputFile is a session's output: a ring file keeping the newest cap bytes.
// Offsets are absolute (bytes since the session started).
type outputFile struct {
	path string
	cap  int64

	mu      sync.Mutex
	f       *os.File // open while the session writes; nil after close
	size    int64
	removed bool // the session was removed: reads find nothing
}

// markRemoved makes later reads fail with errRemoved.
func (o *outputFile) markRemoved() {
	o.mu.Lock()
	o.removed = true
	o.mu.Unlock()
}

// errRemoved is returned by ReadAt once the session was removed.
var errRemoved = errors.New("session removed")

// createOutput creates a new, empty output file.
func createOutput(path string, cap int64) (*outputFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, err
	}
	o := &outputFile{path: path, cap: cap, f: f}
	if err := o.writeHeader(); err != nil {
		f.Close()
		return nil, err
	}
	return o, nil
}

// openOutput returns the output file at path written by an earlier agent,
// closed; reads open it on demand.
func openOutput(path string, cap int64) *outputFile {
	o := &outputFile{path: path, cap: cap}
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return o // reads report the missing file as empty output
	}
	defer f.Close()
	var h [outHeader]byte
	if _, err := io.ReadFull(f, h[:]); err == nil {
		o.size = int64(binary.LittleEndian.Uint64(h[:]))
	}
	// The header is written after the data it counts, so after a crash it
	// may lag; until the ring first wraps, the file length is exact.
	if st, err := f.Stat(); err == nil {
		if n := st.Size() - outHeader; n < o.cap {
			o.size = max(n, 0)
		} else if o.size < o.cap {
			o.size = o.cap
		}
	}
	return o
}

func (o *outputFile) writeHeader() error {
	var h [outHeader]byte
	binary.LittleEndian.PutUint64(h[:], uint64(o.size))
	_, err := o.f.WriteAt(h[:], 0)
	return err
}

// Write appends p, dropping the oldest bytes beyond the cap.
func (o *outputFile) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.f == nil {
		return 0, os.ErrClosed
	}
	n := len(p)
	if int64(len(p)) > o.cap {
		skip := int64(len(p)) - o.cap
		o.size += skip
		p = p[skip:]
	}
	for len(p) > 0 {
		pos := o.size % o.cap
		k := min(int64(len(p)), o.cap-pos)
		if _, err := o.f.WriteAt(p[:k], outHeader+pos); err != nil {
			return n - len(p), err
		}
		o.size += k
		p = p[k:]
	}
	return n, o.writeHeader()
}

// Size returns the total bytes written.
func (o *outputFile) Size() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.size
}

// kept returns how many output bytes the file keeps (its size on disk less
// the header).
func (o *outputFile) kept() int64 {
	return min(o.Size(), o.cap)
}

// errOffsetPastEnd is returned by ReadAt for offsets beyond Size.
var errOffsetPastEnd = errors.New("offset past the end of output")

// ReadAt reads up to max bytes from off into a buffer from buffer. When off was dropped by the cap it
// reads from the first kept offset instead; from is where data starts.
func (o *outputFile) ReadAt(off int64, max int, buffer func(int) []byte) (data []byte, from, start, size int64, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.removed {
		return nil, off, 0, 0, errRemoved
	}
	size = o.size
	start = size - o.cap
	if start < 0 {
		start = 0
	}
	if off > size {
		return nil, off, start, size, errOffsetPastEnd
	}
	from = off
	if from < start {
		from = start
	}
	n := min(int64(max), size-from)
	if n == 0 {
		return nil, from, start, size, nil
	}
	f := o.f
	if f == nil {
		if f, err = os.OpenFile(o.path, os.O_RDONLY|unix.O_NOFOLLOW, 0); err != nil {
			return nil, from, start, size, err
		}
		defer f.Close()
	}
	data = buffer(int(n))
	for got := int64(0); got < n; {
		pos := (from + got) % o.cap
		k := min(n-got, o.cap-pos)
		if _, err := f.ReadAt(data[got:got+k], outHeader+pos); err != nil {
			return nil, from, start, size, err
		}
		got += k
	}
	return data, from, start, size, nil
}

// Close stops writing; later reads open the file on demand.
func (o *outputFile) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.f == nil {
		return nil
	}
	err := o.f.Close()
	o.f = nil
	return err
}

// reopenOutput opens for writing the output file of a session handed over
// by the image before this one, which had written size bytes. A file
// removed meanwhile is created again (its bytes before size read as zeros):
// the session matters more than its past output.
func reopenOutput(path string, cap, size int64) (*outputFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, err
	}
	o := &outputFile{path: path, cap: cap, f: f, size: size}
	if err := o.writeHeader(); err != nil {
		f.Close()
		return nil, err
	}
	return o, nil
}
