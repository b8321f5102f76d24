package agent_test

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"octo/internal/agent"
	"octo/internal/agent/agenttest"
	"octo/internal/agentrpc"
)

// File.Read (through openRead: openat2, else os.Root) reads what the
// workspace holds (also through symlinks that stay inside) and refuses
// everything else with the right codes; a FIFO never hangs.
func TestReadPaths(t *testing.T) {
	ws := t.TempDir()
	sock, _ := agenttest.StartServer(t, agent.Config{Workspace: ws, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	c := dial(t, sock)
	ctx := ctxT(t)
	os.MkdirAll(filepath.Join(ws, "sub"), 0o755)
	os.WriteFile(filepath.Join(ws, "sub", "f"), []byte("inside"), 0o640)
	os.Symlink("sub/f", filepath.Join(ws, "in"))
	os.Symlink("../sub/f", filepath.Join(ws, "sub", "up"))
	os.Symlink(filepath.Join(ws, "sub", "f"), filepath.Join(ws, "abs"))
	os.Symlink("/proc/self/root/etc/hostname", filepath.Join(ws, "magic"))
	if err := syscall.Mkfifo(filepath.Join(ws, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path   string
		offset int64
		want   string
		code   agentrpc.Code // "" for success
	}{
		{path: "sub/f", want: "inside"},
		{path: "sub/f", offset: 2, want: "side"},
		{path: "sub/f", offset: 100, want: ""},
		{path: "in", want: "inside"},
		{path: "sub/up", want: "inside"},
		{path: "sub/../sub/f", want: "inside"},
		{path: "abs", code: agentrpc.CodeOutsideWorkspace},
		{path: "magic", code: agentrpc.CodeOutsideWorkspace},
		{path: "fifo", code: agentrpc.CodeInvalid},
		{path: "sub", code: agentrpc.CodeInvalid},
		{path: "missing", code: agentrpc.CodeNotFound},
		{path: "../x", code: agentrpc.CodeOutsideWorkspace},
	}
	for _, tt := range tests {
		r, err := c.Read(ctx, agentrpc.ReadRequest{Path: tt.path, Offset: tt.offset})
		if tt.code != "" {
			wantCode(t, "read "+tt.path, err, tt.code)
			continue
		}
		if err != nil || string(r.Data) != tt.want || !r.EOF {
			t.Errorf("read %s at %d = %q eof %v, %v; want %q at EOF", tt.path, tt.offset, r.Data, r.EOF, err, tt.want)
			continue
		}
		if want := filepath.Base(tt.path); r.Info.Name != want || r.Info.Type != agentrpc.TypeFile || r.Info.Size != 6 || r.Info.Mode != 0o640 || r.Info.ModTime.IsZero() {
			t.Errorf("read %s: info %+v; want name %q, a 6-byte file, mode 0640, a time", tt.path, r.Info, want)
		}
	}
}
