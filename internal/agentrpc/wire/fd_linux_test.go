package wire

import (
	"io"
	"net"
	"net/rpc"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// FileService passes a descriptor of Path with each reply.
type FileService struct{}

func (FileService) Open(req *PathReq, reply *FileReply) error {
	f, err := os.Open(req.Path)
	if err != nil {
		return err
	}
	reply.Name, reply.File = req.Path, f
	return nil
}

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// unixPair returns the two ends of a Unix stream connection.
func unixPair(t *testing.T) (server, client *net.UnixConn) {
	t.Helper()
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "s.sock"))
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
	return sc.(*net.UnixConn), cc.(*net.UnixConn)
}

// A reply's descriptor reaches the client's body; the server's copy is
// closed once sent, and a client that discards the body (a late reply)
// gets its copy closed: nothing leaks over many calls.
func TestDescriptorPassing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	os.WriteFile(path, []byte("content"), 0o644)
	srv := rpc.NewServer()
	if err := srv.RegisterName("T", FileService{}); err != nil {
		t.Fatal(err)
	}
	sc, cc := unixPair(t)
	go srv.ServeCodec(NewServerCodec(sc, testMaxSize))
	codec := NewClientCodec(cc, testMaxSize)
	if !codec.PassesFDs() {
		t.Fatal("a Unix connection does not pass descriptors")
	}
	c := rpc.NewClientWithCodec(codec)
	defer c.Close()
	var r FileReply
	if err := c.Call("T.Open", &PathReq{Path: path}, &r); err != nil || r.File == nil {
		t.Fatalf("open: %v, file %v", err, r.File)
	}
	b, _ := io.ReadAll(r.File)
	r.File.Close()
	if string(b) != "content" {
		t.Errorf("read from the passed descriptor: %q", b)
	}
	before := countFDs(t)
	for range 500 {
		var r FileReply
		if err := c.Call("T.Open", &PathReq{Path: path}, &r); err != nil {
			t.Fatal(err)
		}
		r.File.Close()
	}
	if after := countFDs(t); after > before+2 {
		t.Errorf("descriptors: %d before, %d after 500 calls", before, after)
	}
}

// A reply whose body is discarded (net/rpc does so for a reply to no
// pending call) has its descriptor closed.
func TestDescriptorOfDiscardedReplyClosed(t *testing.T) {
	sc, cc := unixPair(t)
	s, c := NewServerCodec(sc, testMaxSize), NewClientCodec(cc, testMaxSize)
	defer s.Close()
	defer c.Close()
	before := countFDs(t)
	for seq := range 100 {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.WriteResponse(&rpc.Response{ServiceMethod: "T.Open", Seq: uint64(seq)}, &FileReply{Name: "n", File: f}); err != nil {
			t.Fatal(err)
		}
		var h rpc.Response
		if err := c.ReadResponseHeader(&h); err != nil || h.Seq != uint64(seq) {
			t.Fatalf("reply %d: %+v, %v", seq, h, err)
		}
		if err := c.ReadResponseBody(nil); err != nil {
			t.Fatal(err)
		}
	}
	if after := countFDs(t); after > before {
		t.Errorf("descriptors: %d before, %d after 100 discarded replies", before, after)
	}
}

// A connection that cannot pass descriptors reports it.
func TestNoDescriptorsOverPlainConn(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	if NewClientCodec(b, testMaxSize).PassesFDs() {
		t.Error("a pipe passes descriptors")
	}
}

// An agent that sends descriptors no reply claims is refused once they
// pile up, and those it sent are closed.
func TestUnclaimedDescriptorsRefused(t *testing.T) {
	sc, cc := unixPair(t)
	defer sc.Close()
	f, _ := os.Open(os.DevNull)
	fd := int(f.Fd())
	before := countFDs(t)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		// A frame of 100 bytes whose every byte brings a descriptor.
		sc.WriteMsgUnix([]byte{100}, syscall.UnixRights(fd), nil)
		for range maxQueuedFDs + 2 {
			if _, _, err := sc.WriteMsgUnix([]byte{'r'}, syscall.UnixRights(fd), nil); err != nil {
				return
			}
		}
	}()
	defer func() { <-sent; f.Close() }()
	c := NewClientCodec(cc, testMaxSize)
	var h rpc.Response
	err := c.ReadResponseHeader(&h)
	if err == nil || !strings.Contains(err.Error(), "descriptors") {
		t.Fatalf("got %v, want the descriptors refused", err)
	}
	<-sent
	if after := countFDs(t); after > before {
		t.Errorf("descriptors: %d before, %d after the refusal", before, after)
	}
}
