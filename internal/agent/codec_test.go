package agent_test

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"octo/internal/agent"
	"octo/internal/agent/agenttest"
	"octo/internal/agentrpc"
)

// Replies written together by the server codec's flusher must each reach
// their own call intact: concurrent reads of different files, small and
// 1 MiB, over one connection, each get their file's bytes.
func TestConcurrentRepliesOneConnection(t *testing.T) {
	ws := t.TempDir()
	sock, _ := agenttest.StartServer(t, agent.Config{Workspace: ws, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	c := dial(t, sock)
	ctx := ctxT(t)
	files := map[string][]byte{}
	for i := range 8 {
		size := 100 + i
		if i%4 == 0 {
			size = agentrpc.MaxReadChunk
		}
		data := bytes.Repeat([]byte{byte('a' + i)}, size)
		name := fmt.Sprintf("f%d", i)
		if err := os.WriteFile(filepath.Join(ws, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		files[name] = data
	}
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for g := range 32 {
		wg.Go(func() {
			for i := range 20 {
				name := fmt.Sprintf("f%d", (g+i)%8)
				r, err := c.Read(ctx, agentrpc.ReadRequest{Path: name})
				if err != nil {
					errs <- fmt.Errorf("read %s: %w", name, err)
					return
				}
				if !bytes.Equal(r.Data, files[name]) || !r.EOF || r.Info.Size != int64(len(files[name])) || r.Info.Name != name {
					errs <- fmt.Errorf("read %s: got %d bytes of %q, eof %v, info %+v; want %d bytes of %q",
						name, len(r.Data), r.Data[:min(len(r.Data), 1)], r.EOF, r.Info, len(files[name]), files[name][:1])
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
