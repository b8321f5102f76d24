package agent

import "time"

// SetInputTimeout changes how long WriteInput waits, for a test; the
// returned func restores it.
func SetInputTimeout(d time.Duration) (restore func()) {
	old := inputTimeout
	inputTimeout = d
	return func() { inputTimeout = old }
}
