package agent_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"octo/internal/agent"
	"octo/internal/agent/agenttest"
	"octo/internal/agentrpc"
)

// transports are the two ways files move: by descriptor over the Unix
// socket, and in chunks over a connection that cannot pass descriptors
// (a remote agent's), against the same real agent.
var transports = []struct {
	name string
	fds  bool
}{{"fd", true}, {"chunks", false}}

// dialAs dials sock, hiding the Unix connection when fds is false.
func dialAs(t testing.TB, sock string, fds bool) *agentrpc.Client {
	t.Helper()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var c *agentrpc.Client
	if fds {
		c = agentrpc.NewClient(conn)
	} else {
		c = agentrpc.NewClient(struct{ net.Conn }{conn})
	}
	t.Cleanup(func() { c.Close() })
	if c.PassesFDs() != fds {
		t.Fatalf("PassesFDs() = %v, want %v", c.PassesFDs(), fds)
	}
	return c
}

// download reads path whole through Open and, without a descriptor, Read.
func download(t *testing.T, c *agentrpc.Client, p string) ([]byte, agentrpc.OpenReply) {
	t.Helper()
	o, err := c.Open(ctxT(t), agentrpc.OpenRequest{Path: p, Inline: agentrpc.MaxInline, FD: true})
	if err != nil {
		t.Fatalf("open %s: %v", p, err)
	}
	switch {
	case o.Inline:
		return o.Data, o
	case o.File != nil:
		defer o.File.Close()
		b, err := io.ReadAll(o.File)
		if err != nil {
			t.Fatal(err)
		}
		return b, o
	}
	var out []byte
	for int64(len(out)) < o.Info.Size {
		rr, err := c.Read(ctxT(t), agentrpc.ReadRequest{Path: p, Offset: int64(len(out))})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rr.Data...)
		if rr.EOF {
			break
		}
	}
	return out, o
}

// upload writes data to p through Create, the descriptor or WriteAt, and Commit.
func upload(t *testing.T, c *agentrpc.Client, req agentrpc.CreateRequest, data []byte, ifMatch string) (agentrpc.CommitReply, error) {
	t.Helper()
	req.FD = true
	u, err := c.Create(ctxT(t), req)
	if err != nil {
		return agentrpc.CommitReply{}, err
	}
	if u.File != nil {
		if _, err := u.File.Write(data); err != nil {
			t.Fatal(err)
		}
		u.File.Close()
	} else {
		for off := 0; off < len(data); off += agentrpc.MaxWriteChunk {
			chunk := data[off:min(off+agentrpc.MaxWriteChunk, len(data))]
			if err := c.WriteAt(ctxT(t), agentrpc.ChunkRequest{ID: u.ID, Offset: int64(off), Data: chunk}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return c.Commit(ctxT(t), agentrpc.CommitRequest{ID: u.ID, Size: int64(len(data)), IfMatch: ifMatch})
}

// temps lists the agent's temporary files in dir.
func temps(t *testing.T, dir string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, ".*.octo-tmp-*"))
	return m
}

func TestOpenTransports(t *testing.T) {
	ws := t.TempDir()
	sock := agenttest.Start(t, ws)
	small := []byte("hello")
	big := bytes.Repeat([]byte("0123456789abcdef"), 20000) // 320 KB: not inline
	os.WriteFile(filepath.Join(ws, "small"), small, 0o644)
	os.WriteFile(filepath.Join(ws, "big"), big, 0o644)
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			c := dialAs(t, sock, tr.fds)
			got, o := download(t, c, "small")
			if !o.Inline || !bytes.Equal(got, small) {
				t.Errorf("small: inline %v, %q; want inline %q", o.Inline, got, small)
			}
			got, o = download(t, c, "big")
			if o.Inline || !bytes.Equal(got, big) {
				t.Errorf("big: inline %v, %d bytes equal %v; want by %s, %d bytes", o.Inline, len(got), bytes.Equal(got, big), tr.name, len(big))
			}
			if (o.File != nil) != tr.fds {
				t.Errorf("big: descriptor passed %v, want %v", o.File != nil, tr.fds)
			}
			if o.Info.Size != int64(len(big)) || o.Info.Inode == 0 || o.Info.Type != agentrpc.TypeFile {
				t.Errorf("big: info %+v", o.Info)
			}
		})
	}
}

// A passed descriptor is read-only, not O_PATH, and of a regular file.
func TestOpenDescriptorReadOnly(t *testing.T) {
	ws := t.TempDir()
	sock := agenttest.Start(t, ws)
	os.WriteFile(filepath.Join(ws, "f"), make([]byte, 100000), 0o666)
	c := dialAs(t, sock, true)
	o, err := c.Open(ctxT(t), agentrpc.OpenRequest{Path: "f", FD: true})
	if err != nil || o.File == nil {
		t.Fatalf("open: %v, file %v", err, o.File)
	}
	defer o.File.Close()
	fl, err := unix.FcntlInt(o.File.Fd(), unix.F_GETFL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if fl&unix.O_ACCMODE != unix.O_RDONLY || fl&unix.O_PATH != 0 || fl&unix.O_NONBLOCK != 0 {
		t.Errorf("flags %#o: want O_RDONLY without O_PATH or O_NONBLOCK", fl)
	}
	if _, err := o.File.Write([]byte("x")); err == nil {
		t.Error("write to the passed descriptor succeeded")
	}
	fd, _ := unix.FcntlInt(o.File.Fd(), unix.F_GETFD, 0)
	if fd&unix.FD_CLOEXEC == 0 {
		t.Error("passed descriptor lacks FD_CLOEXEC")
	}
}

func TestOpenRefusals(t *testing.T) {
	ws := t.TempDir()
	outside := t.TempDir()
	sock := agenttest.Start(t, ws)
	os.WriteFile(filepath.Join(outside, "secret"), make([]byte, 100000), 0o644)
	os.Mkdir(filepath.Join(ws, "d"), 0o755)
	if err := syscall.Mkfifo(filepath.Join(ws, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Symlink(filepath.Join(outside, "secret"), filepath.Join(ws, "abs"))
	os.Symlink("../"+filepath.Base(outside)+"/secret", filepath.Join(ws, "rel"))
	os.Symlink("/dev/zero", filepath.Join(ws, "dev"))
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			c := dialAs(t, sock, tr.fds)
			o, err := c.Open(ctxT(t), agentrpc.OpenRequest{Path: "d", FD: true})
			if err != nil || o.Info.Type != agentrpc.TypeDir || o.File != nil {
				t.Errorf("dir: %+v, %v; want described as a dir", o, err)
			}
			for _, tt := range []struct {
				path string
				code agentrpc.Code
			}{
				{"fifo", agentrpc.CodeInvalid},
				{"abs", agentrpc.CodeOutsideWorkspace},
				{"rel", agentrpc.CodeOutsideWorkspace},
				{"dev", agentrpc.CodeOutsideWorkspace},
				{"missing", agentrpc.CodeNotFound},
				{"../x", agentrpc.CodeOutsideWorkspace},
			} {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				o, err := c.Open(ctx, agentrpc.OpenRequest{Path: tt.path, FD: true})
				cancel()
				if o.File != nil {
					t.Errorf("%s: a descriptor was passed", tt.path)
				}
				wantCode(t, tt.path, err, tt.code)
			}
		})
	}
}

// Descriptors are not leaked: after 2,000 opens by descriptor, the
// process (agent and client both) holds as many as before.
func TestOpenDescriptorsClosed(t *testing.T) {
	ws := t.TempDir()
	sock := agenttest.Start(t, ws)
	os.WriteFile(filepath.Join(ws, "f"), make([]byte, 100000), 0o644)
	c := dialAs(t, sock, true)
	c.Info(ctxT(t))
	before := countFDs(t)
	for range 2000 {
		o, err := c.Open(ctxT(t), agentrpc.OpenRequest{Path: "f", FD: true})
		if err != nil || o.File == nil {
			t.Fatalf("open: %v", err)
		}
		o.File.Close()
	}
	if after := countFDs(t); after > before+2 {
		t.Errorf("open descriptors: %d before, %d after 2000 opens", before, after)
	}
}

func countFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestUploadTransports(t *testing.T) {
	ws := t.TempDir()
	sock := agenttest.Start(t, ws)
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			c := dialAs(t, sock, tr.fds)
			name := "up-" + tr.name
			data := bytes.Repeat([]byte("x"), 3<<20+5)
			cr, err := upload(t, c, agentrpc.CreateRequest{Path: "sub/" + name, CreateParents: true, Mode: 0o600}, data, "")
			if err != nil {
				t.Fatal(err)
			}
			if !cr.Created || cr.Info.Size != int64(len(data)) || cr.Info.Mode != 0o600 {
				t.Errorf("create: %+v", cr)
			}
			got, _ := os.ReadFile(filepath.Join(ws, "sub", name))
			if !bytes.Equal(got, data) {
				t.Errorf("content: %d bytes, want %d", len(got), len(data))
			}
			// Replace: mode kept, Created false; an If-Match on the
			// current ETag passes, a stale one fails and changes nothing.
			etag := cr.Info.ETag()
			cr2, err := upload(t, c, agentrpc.CreateRequest{Path: "sub/" + name, Mode: 0o644}, []byte("v2"), etag)
			if err != nil || cr2.Created || cr2.Info.Mode != 0o600 || cr2.Info.ETag() == etag {
				t.Errorf("replace: %+v, %v; want replaced, mode 0600, new ETag", cr2, err)
			}
			_, err = upload(t, c, agentrpc.CreateRequest{Path: "sub/" + name}, []byte("v3"), etag)
			wantCode(t, "stale If-Match", err, agentrpc.CodePrecondition)
			_, err = upload(t, c, agentrpc.CreateRequest{Path: "sub/new-" + name}, []byte("v3"), "*")
			wantCode(t, "If-Match * on a new file", err, agentrpc.CodePrecondition)
			_, err = upload(t, c, agentrpc.CreateRequest{Path: "sub/" + name, CreateOnly: true}, []byte("v3"), "")
			wantCode(t, "create-only", err, agentrpc.CodeExists)
			if got, _ := os.ReadFile(filepath.Join(ws, "sub", name)); string(got) != "v2" {
				t.Errorf("after refused uploads: %q, want v2", got)
			}
			if m := temps(t, filepath.Join(ws, "sub")); len(m) != 0 {
				t.Errorf("temporary files left: %v", m)
			}
		})
	}
}

// A commit whose size differs from what was written, and an abort, leave
// the old file and no temporary file.
func TestUploadAbort(t *testing.T) {
	ws := t.TempDir()
	sock := agenttest.Start(t, ws)
	os.WriteFile(filepath.Join(ws, "f"), []byte("old"), 0o644)
	c := dialAs(t, sock, true)
	u, err := c.Create(ctxT(t), agentrpc.CreateRequest{Path: "f", FD: true})
	if err != nil {
		t.Fatal(err)
	}
	if fl, err := unix.FcntlInt(u.File.Fd(), unix.F_GETFL, 0); err != nil || fl&unix.O_ACCMODE != unix.O_WRONLY {
		t.Errorf("upload descriptor flags %#o, %v: want write-only", fl, err)
	}
	u.File.Write([]byte("partial"))
	u.File.Close()
	if len(temps(t, ws)) != 1 {
		t.Fatalf("temporary files during the upload: %v, want one", temps(t, ws))
	}
	_, err = c.Commit(ctxT(t), agentrpc.CommitRequest{ID: u.ID, Size: 100})
	wantCode(t, "short commit", err, agentrpc.CodeInvalid)
	u2, _ := c.Create(ctxT(t), agentrpc.CreateRequest{Path: "f"})
	if err := c.Abort(ctxT(t), u2.ID); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "abort twice", c.Abort(ctxT(t), u2.ID), agentrpc.CodeNotFound)
	if got, _ := os.ReadFile(filepath.Join(ws, "f")); string(got) != "old" {
		t.Errorf("file: %q, want old", got)
	}
	if m := temps(t, ws); len(m) != 0 {
		t.Errorf("temporary files left: %v", m)
	}
}

// An upload its connection leaves unfinished is aborted.
func TestUploadConnectionLost(t *testing.T) {
	ws := t.TempDir()
	sock := agenttest.Start(t, ws)
	c := dialAs(t, sock, true)
	u, err := c.Create(ctxT(t), agentrpc.CreateRequest{Path: "f", FD: true})
	if err != nil {
		t.Fatal(err)
	}
	u.File.Write([]byte("half"))
	u.File.Close()
	c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for len(temps(t, ws)) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("temporary file still there 10s after the connection closed: %v", temps(t, ws))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(ws, "f")); !os.IsNotExist(err) {
		t.Errorf("target exists after an unfinished upload: %v", err)
	}
}

// Temporary files recorded in the state dir by an agent that was killed
// are removed at the next start; a record naming anything else removes
// nothing.
func TestStaleUploadsRemoved(t *testing.T) {
	ws, state := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(ws, "d"), 0o755)
	os.MkdirAll(filepath.Join(state, "uploads"), 0o700)
	stale := filepath.Join(ws, "d", ".f.octo-tmp-0123456789ab")
	os.WriteFile(stale, []byte("half"), 0o600)
	os.WriteFile(filepath.Join(ws, "keep"), []byte("mine"), 0o600)
	os.WriteFile(filepath.Join(state, "uploads", "a"), []byte("d/.f.octo-tmp-0123456789ab"), 0o600)
	os.WriteFile(filepath.Join(state, "uploads", "b"), []byte("keep"), 0o600)
	agenttest.StartServer(t, agent.Config{Workspace: ws, StateDir: state})
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temporary file still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(ws, "keep")); err != nil {
		t.Errorf("a record removed a file that is not a temporary: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(state, "uploads")); len(ents) != 0 {
		t.Errorf("records left: %d", len(ents))
	}
}
