package tokens

import (
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// watcher learns through inotify that the token file may have changed, so
// that authenticating costs no stat(2) while nothing changes.
type watcher struct {
	f       *os.File
	changed atomic.Bool // set by every event; cleared by the reader before rereading
	broken  atomic.Bool // the watch failed: stat every time
}

// newWatcher watches dir, or returns nil if inotify is unavailable.
func newWatcher(dir string) *watcher {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil
	}
	const mask = unix.IN_CREATE | unix.IN_CLOSE_WRITE | unix.IN_MOVED_TO | unix.IN_MOVED_FROM |
		unix.IN_DELETE | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ATTRIB
	if _, err := unix.InotifyAddWatch(fd, dir, mask); err != nil {
		unix.Close(fd)
		return nil
	}
	w := &watcher{f: os.NewFile(uintptr(fd), "inotify:"+dir)}
	w.changed.Store(true)
	go w.loop()
	return w
}

func (w *watcher) loop() {
	buf := make([]byte, 4096)
	for {
		if _, err := w.f.Read(buf); err != nil {
			w.broken.Store(true)
			return
		}
		// Any event in the directory (including queue overflow) means: look again.
		w.changed.Store(true)
	}
}

// mayHaveChanged reports whether the file must be checked, and clears the flag.
func (w *watcher) mayHaveChanged() bool {
	if w == nil || w.broken.Load() {
		return true
	}
	return w.changed.Swap(false)
}

// invalidate makes the next lookup check the file.
func (w *watcher) invalidate() {
	if w != nil {
		w.changed.Store(true)
	}
}

func (w *watcher) close() {
	if w != nil {
		w.f.Close()
	}
}
