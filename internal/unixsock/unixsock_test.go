package unixsock

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestListen(t *testing.T) {
	dir := t.TempDir()

	// A fresh path: bound with the mode asked for.
	fresh := filepath.Join(dir, "fresh.sock")
	ln, err := Listen(fresh, 0o660)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(fresh); err != nil || fi.Mode().Perm() != 0o660 {
		t.Errorf("mode of %s = %v (%v), want 0660", fresh, fi.Mode().Perm(), err)
	}

	// A live server's socket is refused and keeps serving.
	if _, err := Listen(fresh, 0o600); !errors.Is(err, ErrInUse) {
		t.Errorf("Listen on a live socket: %v, want ErrInUse", err)
	}
	c, err := net.Dial("unix", fresh)
	if err != nil {
		t.Errorf("the live server lost its socket: %v", err)
	} else {
		c.Close()
	}

	// A dead server's socket is replaced.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	ln2, err := Listen(fresh, 0o600)
	if err != nil {
		t.Fatalf("Listen on a stale socket: %v", err)
	}
	ln2.Close()

	// Anything else at the path stays as it is.
	regular := filepath.Join(dir, "file")
	os.WriteFile(regular, []byte("keep me"), 0o644)
	if _, err := Listen(regular, 0o600); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen on a regular file: %v, want an error saying it is not a socket", err)
	}
	if b, _ := os.ReadFile(regular); string(b) != "keep me" {
		t.Errorf("regular file changed to %q", b)
	}
}
