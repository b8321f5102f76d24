package dockerapi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

func frame(stream byte, payload string) []byte {
	h := make([]byte, 8, 8+len(payload))
	h[0] = stream
	binary.BigEndian.PutUint32(h[4:], uint32(len(payload)))
	return append(h, payload...)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestDemux(t *testing.T) {
	tests := []struct {
		name           string
		in             []byte
		stdout, stderr string
		wantErr        error
	}{
		{"empty", nil, "", "", nil},
		{"interleaved", cat(frame(1, "a\n"), frame(2, "x\n"), frame(1, "b\n")), "a\nb\n", "x\n", nil},
		{"stderr first", cat(frame(2, "e"), frame(1, "o")), "o", "e", nil},
		{"empty frame", cat(frame(1, ""), frame(1, "z")), "z", "", nil},
		{"stdin dropped", cat(frame(0, "in"), frame(1, "o")), "o", "", nil},
		{"bad stream", cat(frame(1, "o"), frame(5, "?")), "o", "", ErrBadFrame},
		{"not multiplexed", []byte("plain text output\n"), "", "", ErrBadFrame},
		{"truncated payload", frame(1, "hello")[:10], "he", "", io.ErrUnexpectedEOF},
		{"truncated header", cat(frame(1, "o"), []byte{1, 0, 0}), "o", "", io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o, e bytes.Buffer
			err := Demux(bytes.NewReader(tt.in), &o, &e)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if o.String() != tt.stdout || e.String() != tt.stderr {
				t.Errorf("got stdout %q stderr %q, want %q %q", o.String(), e.String(), tt.stdout, tt.stderr)
			}
		})
	}
}

func TestDemuxLargeFrame(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 100<<10)
	var o, e bytes.Buffer
	if err := Demux(bytes.NewReader(frame(1, string(big))), &o, &e); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(o.Bytes(), big) {
		t.Errorf("got %d bytes, want %d", o.Len(), len(big))
	}
}
