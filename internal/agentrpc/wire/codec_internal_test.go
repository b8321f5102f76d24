package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/rpc"
	"os"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// Test bodies: PathReq and Info travel as gob, chunk and FileReply by
// hand (the latter with a descriptor beside it).
type PathReq struct{ Path string }

type Info struct{ Name string }

type chunk struct {
	Name string
	At   time.Time
	EOF  bool
	Data []byte
}

func (c *chunk) AppendWire(b []byte) []byte {
	b = AppendString(b, c.Name)
	b = AppendTime(b, c.At)
	b = AppendBool(b, c.EOF)
	return binary.AppendUvarint(b, uint64(len(c.Data)))
}
func (c *chunk) WireTail() []byte { return c.Data }
func (c *chunk) ReadWire(r *Reader) {
	c.Name, c.At, c.EOF, c.Data = r.String(), r.Time(), r.Bool(), r.Bytes()
}

type FileReply struct {
	Name string
	File *os.File
}

func (f *FileReply) AppendWire(b []byte) []byte { return AppendString(b, f.Name) }
func (f *FileReply) WireTail() []byte           { return nil }
func (f *FileReply) ReadWire(r *Reader)         { f.Name = r.String() }
func (f *FileReply) PassedFile() *os.File       { return f.File }
func (f *FileReply) SetPassedFile(x *os.File)   { f.File = x }

const (
	methodStat  = "T.Stat"
	methodRead  = "T.Read"
	methodOpen  = "T.Open"
	testMaxSize = 64 << 20
)

// pipeCodecs returns a server codec and a client codec on two ends of a
// Unix socket pair.
func pipeCodecs(t *testing.T) (*ServerCodec, *ClientCodec) {
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
	s, c := NewServerCodec(sc, testMaxSize), NewClientCodec(cc, testMaxSize)
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
		{methodStat, &PathReq{Path: "discarded"}}, // read with a nil body below
		{methodRead, &chunk{Name: "a", At: time.Unix(5, 6), Data: []byte("abc")}},
		{methodStat, &PathReq{Path: "b"}},
		{methodRead, &chunk{Name: "x", EOF: true}},
		{methodStat, &PathReq{Path: "c"}},
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
		if c, ok := got.(*chunk); ok && !c.At.IsZero() {
			c.At = c.At.Local()
		}
		if !reflect.DeepEqual(got, r.body) {
			t.Errorf("request %d: got %+v, want %+v", i, got, r.body)
		}
	}
	// A reply with an error and a gob body, then a big hand-encoded one,
	// whose data the client keeps without a copy of its own.
	big := bytes.Repeat([]byte("x"), reuseFrame+1)
	go func() {
		s.WriteResponse(&rpc.Response{ServiceMethod: methodStat, Seq: 9, Error: "octo-agent:not_found:gone"}, struct{}{})
		s.WriteResponse(&rpc.Response{ServiceMethod: methodRead, Seq: 10}, &chunk{Data: big, EOF: true})
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
	var rr chunk
	if err := c.ReadResponseBody(&rr); err != nil || !bytes.Equal(rr.Data, big) || !rr.EOF {
		t.Fatalf("big reply body: got %d bytes, EOF %v, %v; want %d, true", len(rr.Data), rr.EOF, err, len(big))
	}
}

// A client that does not open with the preamble (a gob net/rpc client, an
// older octo) is refused before anything it sent is decoded.
func TestServerRefusesWithoutPreamble(t *testing.T) {
	for _, first := range []string{"", "GET / HTTP/1.1\r\n\r\n", strings.Replace(Preamble, "3", "2", 1), "\x0b\xff\x81\x03\x01\x01\x07Request"} {
		a, b := net.Pipe()
		s := NewServerCodec(a, testMaxSize)
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

// A request frame over the limit is refused from its length alone.
func TestServerRefusesHugeRequest(t *testing.T) {
	a, b := net.Pipe()
	s := NewServerCodec(a, testMaxSize)
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
		b := AppendString([]byte{kindRequest, 1}, methodRead)
		b = append(b, body...)
		return append(binary.AppendUvarint(nil, uint64(len(b))), b...)
	}
	f.Add(frame(append([]byte{encWire}, encodeWire(&chunk{Name: "a"})...)))
	f.Add(frame(append([]byte{encWire}, encodeWire(&chunk{Data: []byte("abc"), Name: "n", At: time.Unix(1, 2)})...)))
	f.Add(frame([]byte{encGob, 0}))
	f.Add([]byte{0x05, kindRequest, 1, 0, encGob, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		s := &ServerCodec{fr: newFrameReader(bytes.NewReader(append([]byte(Preamble), in...)), 1<<20)}
		bodies := []any{&chunk{}, &PathReq{}, &FileReply{}, &Info{}, nil}
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
	if err := srv.RegisterName("Echo", EchoService{}); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		ln, err := net.Listen("unix", t.TempDir()+"/e.sock")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			if c, err := ln.Accept(); err == nil {
				srv.ServeCodec(NewServerCodec(c, testMaxSize))
			}
		}()
		conn, err := net.Dial("unix", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c := NewClientCodec(conn, testMaxSize)
		for seq := range 3 {
			c.WriteRequest(&rpc.Request{ServiceMethod: "Echo.Path", Seq: uint64(seq)}, &PathReq{Path: "p"})
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
			var fi Info
			if err := c.ReadResponseBody(&fi); err != nil || fi.Name != "p" {
				t.Fatalf("round %d: reply %d body: %+v, %v", i, seq, fi, err)
			}
		}
		c.Close()
		ln.Close()
	}
}

type EchoService struct{}

func (EchoService) Path(req *PathReq, reply *Info) error {
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
		fr := newFrameReader(sc, testMaxSize)
		io.ReadFull(fr.br, make([]byte, len(Preamble)))
		seq, _, _, err := fr.next(kindRequest)
		if err != nil {
			return
		}
		b := AppendString(binary.AppendUvarint([]byte{kindReply}, seq), methodStat)
		b = append(AppendString(b, ""), encGob, 3, 0xff, 0xff, 0xff)
		sc.Write(append(binary.AppendUvarint(nil, uint64(len(b))), b...))
		io.Copy(io.Discard, sc)
	}()
	conn, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := rpc.NewClientWithCodec(NewClientCodec(conn, testMaxSize))
	defer c.Close()
	var fi Info
	err = c.Call(methodStat, &PathReq{Path: "x"}, &fi)
	if err == nil || !strings.Contains(err.Error(), "malformed agent reply") {
		t.Fatalf("got %v, want the malformed reply refused", err)
	}
	if err = c.Call(methodStat, &PathReq{Path: "x"}, &fi); err == nil {
		t.Fatal("next call succeeded on a refused connection")
	}
}

// encodeWire is a body's whole encoding, its tail included.
func encodeWire(wb Body) []byte { return append(wb.AppendWire(nil), wb.WireTail()...) }
