package dockerapi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Stream numbers in the 8-byte header of each frame of a multiplexed stream.
const (
	streamStdin  = 0
	streamStdout = 1
	streamStderr = 2
)

// maxFrame bounds one frame's payload so a corrupt header cannot make Demux
// allocate without limit.
const maxFrame = 16 << 20

// ErrBadFrame is returned by Demux for a stream that is not multiplexed.
var ErrBadFrame = errors.New("malformed log frame")

// Demux copies a multiplexed log stream (frames of an 8-byte header: stream,
// three zero bytes, big-endian payload length; then the payload) to stdout
// and stderr. Frames of stdin are dropped.
func Demux(r io.Reader, stdout, stderr io.Writer) error {
	var hdr [8]byte
	buf := make([]byte, 32<<10)
	for {
		if _, err := io.ReadFull(r, hdr[:]); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("frame header: %w", err)
		}
		var w io.Writer
		switch hdr[0] {
		case streamStdin:
			w = io.Discard
		case streamStdout:
			w = stdout
		case streamStderr:
			w = stderr
		default:
			return fmt.Errorf("%w: stream %d", ErrBadFrame, hdr[0])
		}
		if hdr[1] != 0 || hdr[2] != 0 || hdr[3] != 0 {
			return fmt.Errorf("%w: header % x", ErrBadFrame, hdr)
		}
		n := binary.BigEndian.Uint32(hdr[4:])
		if n > maxFrame {
			return fmt.Errorf("%w: %d-byte frame", ErrBadFrame, n)
		}
		got, err := io.CopyBuffer(w, io.LimitReader(r, int64(n)), buf)
		if err != nil {
			return err
		}
		if got < int64(n) {
			return fmt.Errorf("frame payload: %w", io.ErrUnexpectedEOF)
		}
	}
}
