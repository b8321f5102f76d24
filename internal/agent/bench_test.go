package agent_test

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"octo/internal/agent"
	"octo/internal/agent/agenttest"
	"octo/internal/agentrpc"
)

// benchClient starts an agent that logs nowhere and returns a client and
// its workspace.
func benchClient(b *testing.B) (*agentrpc.Client, string) {
	ws := b.TempDir()
	sock, _ := agenttest.StartServer(b, agent.Config{Workspace: ws, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return dial(b, sock), ws
}

// BenchmarkInfo measures an RPC round trip over the Unix socket.
func BenchmarkInfo(b *testing.B) {
	c, _ := benchClient(b)
	ctx := ctxT(b)
	for b.Loop() {
		if _, err := c.Info(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSessionTrue measures a session from Start to the end of its
// captured output: /bin/true, its record saved at start and at exit. The
// state dir is on the test's temporary disk and, when /dev/shm exists, on
// tmpfs, to tell the agent's cost from the file system's.
func BenchmarkSessionTrue(b *testing.B) {
	dirs := map[string]string{"disk": b.TempDir()}
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "octo-bench")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(d) })
		dirs["tmpfs"] = d
	}
	for _, name := range []string{"disk", "tmpfs"} {
		dir, ok := dirs[name]
		if !ok {
			continue
		}
		b.Run("state="+name, func(b *testing.B) {
			sock, _ := agenttest.StartServer(b, agent.Config{StateDir: filepath.Join(dir, "state"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			c := dial(b, sock)
			ctx := ctxT(b)
			for b.Loop() {
				s, err := c.Start(ctx, agentrpc.StartRequest{Argv: []string{"/bin/true"}})
				if err != nil {
					b.Fatal(err)
				}
				o, err := c.ReadOutput(ctx, agentrpc.OutputRequest{ID: s.ID, Wait: 10 * time.Second})
				if err != nil || !o.Done {
					b.Fatalf("ReadOutput = %+v, %v; want done", o, err)
				}
			}
		})
	}
}

// BenchmarkRead1MiB measures reading a 1 MiB file in one File.Read:
// "typed" through Client.Read (a new 1 MiB reply each time, as the typed
// client decodes), "reuse" through Client.Call into one reply whose buffer
// gob reuses, as a streaming caller would.
func BenchmarkRead1MiB(b *testing.B) {
	c, ws := benchClient(b)
	ctx := ctxT(b)
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i)
	}
	if err := os.WriteFile(filepath.Join(ws, "big"), data, 0o644); err != nil {
		b.Fatal(err)
	}
	b.Run("typed", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			r, err := c.Read(ctx, agentrpc.ReadRequest{Path: "big"})
			if err != nil || len(r.Data) != len(data) || !r.EOF {
				b.Fatalf("Read = %d bytes eof=%v, %v", len(r.Data), r.EOF, err)
			}
		}
	})
	b.Run("reuse", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		var r agentrpc.ReadReply
		req := agentrpc.ReadRequest{Path: "big"}
		for b.Loop() {
			if err := c.Call(ctx, agentrpc.MethodFileRead, &req, &r); err != nil || len(r.Data) != len(data) || !r.EOF {
				b.Fatalf("Read = %d bytes eof=%v, %v", len(r.Data), r.EOF, err)
			}
		}
	})
}
