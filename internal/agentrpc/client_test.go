package agentrpc_test

import (
	"context"
	"errors"
	"net"
	"net/rpc"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"octo/internal/agentrpc"
)

// Hostile is a net/rpc service standing in for an agent that misbehaves.
type Hostile struct{}

// Big replies with n bytes of data.
func (Hostile) Big(n *int, reply *agentrpc.ReadReply) error {
	reply.Data = make([]byte, *n)
	return nil
}

// File serves File.Read for the typed client, answering at once.
type File struct{}

func (File) Read(req *agentrpc.ReadRequest, reply *agentrpc.ReadReply) error {
	reply.Data = make([]byte, req.Length)
	reply.Info.Name = req.Path
	return nil
}

func serve(t testing.TB, services map[string]any) string {
	t.Helper()
	srv := rpc.NewServer()
	for name, svc := range services {
		if err := srv.RegisterName(name, svc); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "a.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go agentrpc.Accept(srv, ln)
	return ln.Addr().String()
}

// A reply over MaxReplySize fails with ErrBadReply and closes the
// connection (later calls fail with ErrConnLost); one under it is decoded.
func TestClientRefusesHugeReply(t *testing.T) {
	sock := serve(t, map[string]any{"Hostile": Hostile{}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := agentrpc.Dial(ctx, "unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	ok := agentrpc.MaxReadChunk
	var r agentrpc.ReadReply
	if err := c.Call(ctx, "Hostile.Big", &ok, &r); err != nil || len(r.Data) != ok {
		t.Fatalf("reply of %d bytes: len %d, err %v; want it decoded", ok, len(r.Data), err)
	}
	huge := agentrpc.MaxReplySize + 1
	err = c.Call(ctx, "Hostile.Big", &huge, &agentrpc.ReadReply{})
	if !errors.Is(err, agentrpc.ErrBadReply) {
		t.Fatalf("reply of %d bytes: err = %v, want ErrBadReply", huge, err)
	}
	err = c.Call(ctx, "Hostile.Big", &ok, &agentrpc.ReadReply{})
	if !errors.Is(err, agentrpc.ErrConnLost) {
		t.Fatalf("call after a refused reply: err = %v, want ErrConnLost (connection closed)", err)
	}
}

// When ctx ends first, typed methods return the zero value and never read
// the reply that net/rpc may still be decoding: go test -race catches a read
// of the reply racing with the client's reader goroutine writing it. Each
// call has its own client, so that no later call orders the two accesses.
func TestTypedCallCanceledReturnsZero(t *testing.T) {
	sock := serve(t, map[string]any{"File": File{}})
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 20 {
		c, err := agentrpc.Dial(context.Background(), "unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		r, err := c.Read(canceled, agentrpc.ReadRequest{Path: "f", Length: 4096})
		if err != nil && (!errors.Is(err, context.Canceled) || r.Data != nil || r.Info.Name != "") {
			t.Fatalf("call %d: got %d bytes, name %q, err %v; want the zero value with context.Canceled", i, len(r.Data), r.Info.Name, err)
		}
		time.Sleep(20 * time.Millisecond) // the late reply is decoded meanwhile
		c.Close()
	}
}

// LateFile answers File.Open with a descriptor, after a delay.
type LateFile struct{}

func (LateFile) Open(req *agentrpc.OpenRequest, reply *agentrpc.OpenReply) error {
	time.Sleep(200 * time.Millisecond)
	f, err := os.Open(os.DevNull)
	reply.File = f
	return err
}

// A descriptor that arrives for a call given up on is closed: nobody reads
// that reply.
func TestLateDescriptorClosed(t *testing.T) {
	sock := serve(t, map[string]any{"File": LateFile{}})
	c, err := agentrpc.Dial(context.Background(), "unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Info(context.Background()) // the connection is up; its reply is an error
	count := func() int {
		ents, _ := os.ReadDir("/proc/self/fd")
		return len(ents)
	}
	before := count()
	for range 5 {
		ctx, cancel := agentrpc.WithTimeout(context.Background(), 20*time.Millisecond)
		_, err := c.Open(ctx, agentrpc.OpenRequest{Path: "f", FD: true})
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want the deadline", err)
		}
	}
	// Every late reply has arrived (and has been closed) by then: the
	// agent answers all five at once, 200ms after they were sent.
	time.Sleep(time.Second)
	if after := count(); after > before {
		t.Fatalf("descriptors: %d before, %d after late replies", before, after)
	}
}

// HostileFiles passes descriptors a real agent never would.
type HostileFiles struct{ dir string }

// Open passes what req.Path names: "fifo" (opened without blocking), "dir"
// or "file" (read-only).
func (h HostileFiles) Open(req *agentrpc.OpenRequest, reply *agentrpc.OpenReply) error {
	var err error
	reply.File, err = os.OpenFile(filepath.Join(h.dir, req.Path), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	return err
}

// Create passes a read-only descriptor for an upload.
func (h HostileFiles) Create(req *agentrpc.CreateRequest, reply *agentrpc.Upload) error {
	var err error
	reply.ID = "u"
	reply.File, err = os.Open(filepath.Join(h.dir, "file"))
	return err
}

// The client refuses descriptors that are not of a regular file, not
// asked for, or not open for the transfer's direction, and closes them.
func TestClientRefusesBadDescriptors(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "dir"), 0o755)
	os.WriteFile(filepath.Join(dir, "file"), []byte("x"), 0o644)
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := serve(t, map[string]any{"File": HostileFiles{dir}})
	count := func() int {
		ents, _ := os.ReadDir("/proc/self/fd")
		return len(ents)
	}
	before := count()
	for _, tt := range []struct {
		what string
		call func(c *agentrpc.Client) error
	}{
		{"a FIFO", func(c *agentrpc.Client) error {
			_, err := c.Open(t.Context(), agentrpc.OpenRequest{Path: "fifo", FD: true})
			return err
		}},
		{"a directory", func(c *agentrpc.Client) error {
			_, err := c.Open(t.Context(), agentrpc.OpenRequest{Path: "dir", FD: true})
			return err
		}},
		{"a file not asked for", func(c *agentrpc.Client) error {
			_, err := c.Open(t.Context(), agentrpc.OpenRequest{Path: "file"})
			return err
		}},
		{"a read-only file for an upload", func(c *agentrpc.Client) error {
			_, err := c.Create(t.Context(), agentrpc.CreateRequest{Path: "file", FD: true})
			return err
		}},
	} {
		c, err := agentrpc.Dial(t.Context(), "unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		if err := tt.call(c); !errors.Is(err, agentrpc.ErrBadReply) {
			t.Errorf("%s: got %v, want ErrBadReply", tt.what, err)
		}
		c.Close()
	}
	// The server's ends of the closed connections close as it notices.
	for deadline := time.Now().Add(5 * time.Second); count() > before; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("descriptors: %d before, %d after the refusals", before, count())
		}
	}
	// A regular file, asked for, passes.
	c, err := agentrpc.Dial(t.Context(), "unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	o, err := c.Open(t.Context(), agentrpc.OpenRequest{Path: "file", FD: true})
	if err != nil || o.File == nil {
		t.Fatalf("a regular file: %v", err)
	}
	o.File.Close()
}
