package agentrpc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/rpc"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// Every hand-encoded type, with its fields set, round-trips unchanged.
func TestWireRoundTrip(t *testing.T) {
	mtime := time.Unix(1700000000, 123456789)
	tests := []wireBody{
		&ReadRequest{},
		&ReadRequest{Path: "dir/é file", Offset: -3, Length: MaxReadChunk},
		&ReadReply{},
		&ReadReply{Data: []byte("hello\x00world"), EOF: true, Info: FileInfo{Name: "f", Type: TypeSymlink,
			Size: 1 << 40, Mode: 0o755, ModTime: mtime, Target: "../t"}},
		&FileInfo{Name: "n", Type: TypeDir, ModTime: time.Unix(-5, 0)},
		&OutputRequest{ID: "s1", Offset: 7, Max: 1 << 20, Wait: 30 * time.Second},
		&Output{Data: bytes.Repeat([]byte{1}, 300), Offset: 1, Next: 301, Start: 1, Size: 301, Done: true},
		&OpenRequest{Path: "a/b", Inline: MaxInline, FD: true},
		&OpenReply{Info: FileInfo{Name: "b", Type: TypeFile, Size: 3, Inode: 1 << 60, ModTime: mtime}, Inline: true, Data: []byte("abc")},
		&Upload{ID: "u1"},
		&ChunkRequest{ID: "u1", Offset: 1 << 33, Data: []byte("chunk")},
	}
	for _, in := range tests {
		for _, alias := range []bool{false, true} {
			b := encodeWire(in)
			out := reflect.New(reflect.TypeOf(in).Elem()).Interface().(wireBody)
			r := wireReader{b: b, alias: alias}
			out.readWire(&r)
			if err := r.done(); err != nil {
				t.Fatalf("%T: decode: %v", in, err)
			}
			if !equalWire(in, out) {
				t.Errorf("%T (alias %v): got %+v, want %+v", in, alias, out, in)
			}
		}
	}
}

// encodeWire is a body's whole encoding, its tail included.
func encodeWire(wb wireBody) []byte { return append(wb.appendWire(nil), wb.wireTail()...) }

// equalWire compares two decoded bodies; times by instant, nil and empty
// byte slices alike.
func equalWire(a, b wireBody) bool {
	norm := func(v wireBody) wireBody {
		switch x := v.(type) {
		case *ReadReply:
			c := *x
			if len(c.Data) == 0 {
				c.Data = nil
			}
			c.Info.ModTime = c.Info.ModTime.UTC()
			return &c
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
			c.Info.ModTime = c.Info.ModTime.UTC()
			return &c
		}
		return v
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

// A field added to a hand-encoded type must be added to its encoding too:
// this fails until the counts below are updated along with wire.go.
func TestWireFieldsCovered(t *testing.T) {
	tests := []struct {
		v    any
		want int
	}{
		{ReadRequest{}, 3},
		{ReadReply{}, 3},
		{FileInfo{}, 7},
		{OutputRequest{}, 4},
		{Output{}, 6},
		{OpenRequest{}, 3},
		{OpenReply{}, 4}, // File travels beside the frame
		{Upload{}, 2},    // File travels beside the frame
		{ChunkRequest{}, 3},
	}
	for _, tt := range tests {
		if got := reflect.TypeOf(tt.v).NumField(); got != tt.want {
			t.Errorf("%T has %d fields, wire.go encodes %d: update both", tt.v, got, tt.want)
		}
	}
}

// Every truncation of a valid body, and a body with a byte too many, is an
// error, never a panic or a silently short value.
func TestWireMalformed(t *testing.T) {
	in := &ReadReply{Data: []byte("data"), Info: FileInfo{Name: "f", ModTime: time.Unix(1, 2)}, EOF: true}
	b := encodeWire(in)
	for n := range len(b) {
		r := wireReader{b: b[:n]}
		new(ReadReply).readWire(&r)
		if err := r.done(); !errors.Is(err, errBadWire) {
			t.Errorf("truncated to %d of %d bytes: got %v, want errBadWire", n, len(b), err)
		}
	}
	r := wireReader{b: append(b, 0)}
	new(ReadReply).readWire(&r)
	if err := r.done(); !errors.Is(err, errBadWire) {
		t.Errorf("a byte left over: got %v, want errBadWire", err)
	}
	for _, bad := range [][]byte{
		{0, 0, 0, 0, 5}, // empty name, type, size, mode; ModTime flag 5
		append(in.appendWire(nil)[:len(in.appendWire(nil))-2], 2, 0), // EOF byte 2
	} {
		r := wireReader{b: bad}
		new(ReadReply).readWire(&r)
		if r.done() == nil {
			t.Errorf("%x: decoded without error", bad)
		}
	}
}

// pipeCodecs returns a server codec and a client codec on two ends of a
// Unix socket pair.
func pipeCodecs(t *testing.T) (*ServerCodec, *clientCodec) {
	t.Helper()
	ln, err := net.Listen("unix", t.TempDir()+"/s.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cc, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	s, c := NewServerCodec(sc), newClientCodec(cc)
	t.Cleanup(func() { s.Close(); c.Close() })
	return s, c
}

// Hand-encoded and gob bodies interleave on one connection, a gob type's
// definition crossing once; a discarded gob body still defines its types.
func TestCodecMixedBodies(t *testing.T) {
	s, c := pipeCodecs(t)
	type req struct {
		method string
		body   any
	}
	reqs := []req{
		{MethodFileStat, &PathRequest{Path: "discarded"}}, // read with a nil body below
		{MethodFileRead, &ReadRequest{Path: "a", Length: 5}},
		{MethodFileStat, &PathRequest{Path: "b"}},
		{MethodSessionOutput, &OutputRequest{ID: "x", Wait: time.Second}},
		{MethodFileStat, &PathRequest{Path: "c"}},
	}
	go func() {
		for i, r := range reqs {
			c.WriteRequest(&rpc.Request{ServiceMethod: r.method, Seq: uint64(i)}, r.body)
		}
	}()
	for i, r := range reqs {
		var h rpc.Request
		if err := s.ReadRequestHeader(&h); err != nil {
			t.Fatalf("request %d: header: %v", i, err)
		}
		if h.Seq != uint64(i) || h.ServiceMethod != r.method {
			t.Fatalf("request %d: got %d %s, want %d %s", i, h.Seq, h.ServiceMethod, i, r.method)
		}
		if i == 0 {
			if err := s.ReadRequestBody(nil); err != nil {
				t.Fatalf("request 0: discard: %v", err)
			}
			continue
		}
		got := reflect.New(reflect.TypeOf(r.body).Elem()).Interface()
		if err := s.ReadRequestBody(got); err != nil {
			t.Fatalf("request %d: body: %v", i, err)
		}
		if !reflect.DeepEqual(got, r.body) {
			t.Errorf("request %d: got %+v, want %+v", i, got, r.body)
		}
	}
	// A reply with an error and a gob body, then a big hand-encoded one,
	// whose data the client keeps without a copy of its own.
	big := bytes.Repeat([]byte("x"), reuseFrame+1)
	go func() {
		s.WriteResponse(&rpc.Response{ServiceMethod: MethodFileStat, Seq: 9, Error: "octo-agent:not_found:gone"}, struct{}{})
		s.WriteResponse(&rpc.Response{ServiceMethod: MethodFileRead, Seq: 10}, &ReadReply{Data: big, EOF: true})
	}()
	var h rpc.Response
	if err := c.ReadResponseHeader(&h); err != nil || h.Seq != 9 || h.Error != "octo-agent:not_found:gone" {
		t.Fatalf("error reply: got %+v, %v", h, err)
	}
	if err := c.ReadResponseBody(nil); err != nil {
		t.Fatalf("error reply body: %v", err)
	}
	if err := c.ReadResponseHeader(&h); err != nil || h.Seq != 10 || h.Error != "" {
		t.Fatalf("big reply: got %+v, %v", h, err)
	}
	var rr ReadReply
	if err := c.ReadResponseBody(&rr); err != nil || !bytes.Equal(rr.Data, big) || !rr.EOF {
		t.Fatalf("big reply body: got %d bytes, EOF %v, %v; want %d, true", len(rr.Data), rr.EOF, err, len(big))
	}
}

// A client that does not open with the preamble (a gob net/rpc client, an
// older octo) is refused before anything it sent is decoded.
func TestServerRefusesWithoutPreamble(t *testing.T) {
	for _, first := range []string{"", "GET / HTTP/1.1\r\n\r\n", strings.Replace(Preamble, "2", "1", 1), "\x0b\xff\x81\x03\x01\x01\x07Request"} {
		a, b := net.Pipe()
		s := NewServerCodec(a)
		go func() { b.Write([]byte(first)); b.Close() }()
		var h rpc.Request
		err := s.ReadRequestHeader(&h)
		if first != "" && !errors.Is(err, ErrPreamble) {
			t.Errorf("first bytes %q: got %v, want ErrPreamble", first, err)
		}
		if first == "" && err != io.EOF {
			t.Errorf("no bytes: got %v, want io.EOF", err)
		}
		s.Close()
	}
}

// A request frame over MaxRequestSize is refused from its length alone.
func TestServerRefusesHugeRequest(t *testing.T) {
	a, b := net.Pipe()
	s := NewServerCodec(a)
	defer s.Close()
	go func() {
		b.Write([]byte(Preamble))
		b.Write([]byte{0xff, 0xff, 0xff, 0xff, 0x7f}) // a 32 GiB frame
	}()
	var h rpc.Request
	var tb *tooBigError
	if err := s.ReadRequestHeader(&h); !errors.As(err, &tb) {
		t.Fatalf("got %v, want a too-big error", err)
	}
}

// Arbitrary bytes after the preamble never panic the codec, whatever body
// types it decodes them into (the client reads replies the same way).
func FuzzServerCodec(f *testing.F) {
	frame := func(body []byte) []byte {
		b := appendString([]byte{kindRequest, 1}, MethodFileRead)
		b = append(b, body...)
		return append(binary.AppendUvarint(nil, uint64(len(b))), b...)
	}
	f.Add(frame(append([]byte{encWire}, encodeWire(&ReadRequest{Path: "a", Length: 3})...)))
	f.Add(frame(append([]byte{encWire}, encodeWire(&ReadReply{Data: []byte("abc"), Info: FileInfo{Name: "n", ModTime: time.Unix(1, 2)}})...)))
	f.Add(frame([]byte{encGob, 0}))
	f.Add([]byte{0x05, kindRequest, 1, 0, encGob, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		s := &ServerCodec{fr: newFrameReader(bytes.NewReader(append([]byte(Preamble), in...)), 1<<20)}
		bodies := []any{&ReadRequest{}, &ReadReply{}, &OutputRequest{}, &Output{}, &FileInfo{}, nil}
		for _, body := range bodies {
			var h rpc.Request
			if err := s.ReadRequestHeader(&h); err != nil {
				return
			}
			if err := s.ReadRequestBody(body); err != nil {
				return
			}
		}
	})
}

// A big frame is read whole whatever the reads return, growing as bytes
// arrive; a short stream is an error.
func TestReadGrowing(t *testing.T) {
	for _, n := range []uint64{1, reuseFrame + 1, allocAhead, allocAhead + 1, 3*allocAhead + 5} {
		want := make([]byte, n)
		for i := range want {
			want[i] = byte(i * 7)
		}
		got, err := readGrowing(iotest.HalfReader(bytes.NewReader(want)), n)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("n=%d: got %d bytes, %v; want them all", n, len(got), err)
		}
		if _, err := readGrowing(bytes.NewReader(want[:n-1]), n); err == nil {
			t.Fatalf("n=%d from %d bytes: got nil error", n, n-1)
		}
	}
}

// Replies written by calls that finished before the client hung up reach
// it: closing the server codec flushes them (net/rpc closes it as soon as
// the last reply is written).
func TestServerRepliesReachClientAtEnd(t *testing.T) {
	srv := rpc.NewServer()
	if err := srv.RegisterName("Echo", echoService{}); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		ln, err := net.Listen("unix", t.TempDir()+"/e.sock")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			if c, err := ln.Accept(); err == nil {
				ServeConn(srv, c)
			}
		}()
		conn, err := net.Dial("unix", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c := newClientCodec(conn)
		for seq := range 3 {
			c.WriteRequest(&rpc.Request{ServiceMethod: "Echo.Path", Seq: uint64(seq)}, &PathRequest{Path: "p"})
		}
		c.mu.Lock()
		c.buf.Flush() // the requests, then at once the end of the stream
		c.mu.Unlock()
		conn.(*net.UnixConn).CloseWrite()
		for seq := range 3 {
			var h rpc.Response
			if err := c.ReadResponseHeader(&h); err != nil {
				t.Fatalf("round %d: reply %d: %v", i, seq, err)
			}
			var fi FileInfo
			if err := c.ReadResponseBody(&fi); err != nil || fi.Name != "p" {
				t.Fatalf("round %d: reply %d body: %+v, %v", i, seq, fi, err)
			}
		}
		c.Close()
		ln.Close()
	}
}

type echoService struct{}

func (echoService) Path(req *PathRequest, reply *FileInfo) error {
	reply.Name = req.Path
	return nil
}

// A reply whose gob body does not decode is a bad reply: the call fails
// with ErrBadReply and the connection is closed.
func TestClientRefusesMalformedGobReply(t *testing.T) {
	ln, err := net.Listen("unix", t.TempDir()+"/bad.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		sc, err := ln.Accept()
		if err != nil {
			return
		}
		defer sc.Close()
		fr := newFrameReader(sc, MaxRequestSize)
		io.ReadFull(fr.br, make([]byte, len(Preamble)))
		seq, _, _, err := fr.next(kindRequest)
		if err != nil {
			return
		}
		b := appendString(binary.AppendUvarint([]byte{kindReply}, seq), MethodFileStat)
		b = append(appendString(b, ""), encGob, 3, 0xff, 0xff, 0xff)
		sc.Write(append(binary.AppendUvarint(nil, uint64(len(b))), b...))
		io.Copy(io.Discard, sc)
	}()
	c, err := Dial(t.Context(), "unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var fi FileInfo
	err = c.Call(t.Context(), MethodFileStat, &PathRequest{Path: "x"}, &fi)
	if !errors.Is(err, ErrBadReply) {
		t.Fatalf("got %v, want ErrBadReply", err)
	}
	err = c.Call(t.Context(), MethodFileStat, &PathRequest{Path: "x"}, &fi)
	if !errors.Is(err, ErrBadReply) && !errors.Is(err, ErrConnLost) {
		t.Fatalf("next call: got %v, want the connection gone", err)
	}
}
