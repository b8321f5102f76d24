package agentrpc

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"

	"octo/internal/agentrpc/wire"
)

// Every hand-encoded type, with its fields set, round-trips unchanged.
func TestWireRoundTrip(t *testing.T) {
	mtime := time.Unix(1700000000, 123456789)
	tests := []wire.Body{
		&OpenRequest{},
		&OpenReply{},
		&OpenReply{Data: []byte("hello\x00world"), Inline: true, Info: FileInfo{Name: "f", Type: TypeSymlink,
			Size: 1 << 40, Mode: 0o755, ModTime: mtime, Target: "../t"}},
		&FileInfo{Name: "n", Type: TypeDir, ModTime: time.Unix(-5, 0)},
		&OutputRequest{ID: "s1", Offset: 7, Max: 1 << 20, Wait: 30 * time.Second},
		&Output{Data: bytes.Repeat([]byte{1}, 300), Offset: 1, Next: 301, Start: 1, Size: 301, Done: true},
		&OpenRequest{Path: "a/b", Inline: MaxInline, FD: true},
		&OpenReply{Info: FileInfo{Name: "b", Type: TypeFile, Size: 3, Inode: 1 << 60, ModTime: mtime}, Inline: true, Data: []byte("abc")},
		&Upload{ID: "u1"},
	}
	for _, in := range tests {
		b := encodeWire(in)
		out := reflect.New(reflect.TypeOf(in).Elem()).Interface().(wire.Body)
		r := wire.NewReader(b)
		out.ReadWire(&r)
		if err := r.Done(); err != nil {
			t.Fatalf("%T: decode: %v", in, err)
		}
		if !equalWire(in, out) {
			t.Errorf("%T: got %+v, want %+v", in, out, in)
		}
	}
}

// encodeWire is a body's whole encoding, its tail included.
func encodeWire(wb wire.Body) []byte { return append(wb.AppendWire(nil), wb.WireTail()...) }

// equalWire compares two decoded bodies; times by instant, nil and empty
// byte slices alike.
func equalWire(a, b wire.Body) bool {
	norm := func(v wire.Body) wire.Body {
		switch x := v.(type) {
		case *FileInfo:
			c := *x
			c.ModTime = c.ModTime.UTC()
			return &c
		case *Output:
			c := *x
			if len(c.Data) == 0 {
				c.Data = nil
			}
			return &c
		case *OpenReply:
			c := *x
			if len(c.Data) == 0 {
				c.Data = nil
			}
			c.Info.ModTime = c.Info.ModTime.UTC()
			return &c
		}
		return v
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

// A field added to a hand-encoded type must be added to its encoding too:
// this fails until the counts below are updated along with encode.go.
func TestWireFieldsCovered(t *testing.T) {
	tests := []struct {
		v    any
		want int
	}{
		{FileInfo{}, 7},
		{OutputRequest{}, 4},
		{Output{}, 6},
		{OpenRequest{}, 3},
		{OpenReply{}, 4}, // File travels beside the frame
		{Upload{}, 2},    // File travels beside the frame
	}
	for _, tt := range tests {
		if got := reflect.TypeOf(tt.v).NumField(); got != tt.want {
			t.Errorf("%T has %d fields, encode.go encodes %d: update both", tt.v, got, tt.want)
		}
	}
}

// Every truncation of a valid body, and a body with a byte too many, is an
// error, never a panic or a silently short value.
func TestWireMalformed(t *testing.T) {
	in := &OpenReply{Data: []byte("data"), Info: FileInfo{Name: "f", ModTime: time.Unix(1, 2)}, Inline: true}
	b := encodeWire(in)
	for n := range len(b) {
		r := wire.NewReader(b[:n])
		new(OpenReply).ReadWire(&r)
		if err := r.Done(); !errors.Is(err, wire.ErrMalformed) {
			t.Errorf("truncated to %d of %d bytes: got %v, want wire.ErrMalformed", n, len(b), err)
		}
	}
	r := wire.NewReader(append(b, 0))
	new(OpenReply).ReadWire(&r)
	if err := r.Done(); !errors.Is(err, wire.ErrMalformed) {
		t.Errorf("a byte left over: got %v, want wire.ErrMalformed", err)
	}
	for _, bad := range [][]byte{
		{0, 0, 0, 0, 5}, // empty name, type, size, mode; ModTime flag 5
		append(in.AppendWire(nil)[:len(in.AppendWire(nil))-2], 2, 0), // Inline byte 2
	} {
		r := wire.NewReader(bad)
		new(OpenReply).ReadWire(&r)
		if r.Done() == nil {
			t.Errorf("%x: decoded without error", bad)
		}
	}
}
