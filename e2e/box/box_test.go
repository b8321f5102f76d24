package box

import (
	"context"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// TestBootIsolated boots a box and checks that it is a separate machine:
// systemd is PID 1 inside, writes to / and /tmp stay inside, and its
// loopback is its own.
func TestBootIsolated(t *testing.T) {
	if err := Check(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("box cannot run and CI=true: %v", err)
		}
		t.Skipf("skipping box test: %v", err)
	}
	ctx := context.Background()
	b, err := Boot(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	}()
	comm, err := b.Run(ctx, "cat", "/proc/1/comm")
	if got, want := strings.TrimSpace(comm), "systemd"; err != nil || got != want {
		t.Errorf("PID 1 in box = %q (%v), want %q", got, err, want)
	}
	marker := "/etc/octo-box-marker-" + t.Name()
	if _, err := b.Sh(ctx, "echo inside > "+marker+"; echo inside > /tmp/marker"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Errorf("box write to %s reached the host (stat: %v)", marker, err)
	}
	if data, err := os.ReadFile(b.Path(marker)); err != nil || string(data) != "inside\n" {
		t.Errorf("box file through Path = %q, %v; want %q", data, err, "inside\n")
	}
	// A listener on the box's loopback is reachable through DialContext only.
	if _, err := b.Run(ctx, "systemd-run", "--unit=echo-listen", "--",
		"systemd-socket-activate", "--accept", "--inetd", "-l", "127.0.0.1:47999", "/bin/echo", "hello-from-box"); err != nil {
		t.Fatal(err)
	}
	var conn net.Conn
	for i := 0; i < 50; i++ {
		if conn, err = b.DialContext(ctx, "tcp", "127.0.0.1:47999"); err == nil {
			break
		}
		b.Run(ctx, "sleep", "0.1")
	}
	if err != nil {
		t.Fatalf("dial box loopback: %v", err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(conn)
	conn.Close()
	if want := "hello-from-box\n"; string(got) != want {
		t.Errorf("read from box listener = %q (%v), want %q", got, err, want)
	}
}
