package passwd

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
)

func TestShell(t *testing.T) {
	p := filepath.Join(t.TempDir(), "passwd")
	data := "root:x:0:0:root:/root:/bin/bash\n" +
		"# a comment:x:1:1::/:/bin/sh\n" +
		"daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n" +
		"plain:x:1000:1000::/home/plain:\n" +
		"broken:x:notanumber:1::/:/bin/sh\n" +
		"short:x:1001\n"
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, want, err string
	}{
		{"root", "/bin/bash", ""},
		{"daemon", "/usr/sbin/nologin", ""},
		{"plain", "/bin/sh", ""}, // an empty shell field means /bin/sh
		{"broken", "", "malformed entry for broken"},
		{"short", "", "no entry for short"}, // not seven fields: not an entry
		{"nosuch", "", "no entry for nosuch"},
		{"roo", "", "no entry for roo"}, // a prefix of a name is not the name
	} {
		got, err := Shell(p, tc.name)
		if got != tc.want || (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("Shell(%q) = %q, %v; want %q, error containing %q", tc.name, got, err, tc.want, tc.err)
		}
	}
	for _, tc := range []struct {
		uid  uint32
		want string
	}{{0, "root"}, {1, "daemon"}, {1000, "plain"}, {1001, ""}, {4242, ""}} {
		got, err := LookupUID(p, tc.uid)
		if got.Name != tc.want || (err != nil) != (tc.want == "") || tc.want == "" && !errors.Is(err, ErrNoEntry) {
			t.Errorf("LookupUID(%d) = %+v, %v; want %q (or ErrNoEntry)", tc.uid, got, err, tc.want)
		}
	}
	if _, err := Shell(filepath.Join(t.TempDir(), "none"), "root"); err == nil {
		t.Errorf("Shell of a missing file: no error")
	}
}

// Current agrees with os/user about the process's own account.
func TestCurrent(t *testing.T) {
	got, err := Current()
	if err != nil {
		t.Fatal(err)
	}
	u, err := user.Current()
	if err != nil {
		t.Skipf("os/user does not know this uid either: %v", err)
	}
	if got.Name != u.Username || got.Home != u.HomeDir || got.UID != uint32(os.Getuid()) {
		t.Errorf("Current() = %+v, want %s with home %s, uid %d", got, u.Username, u.HomeDir, os.Getuid())
	}
	if got.Shell == "" {
		t.Errorf("Current() has no shell, though /etc/passwd has an entry: %+v", got)
	}
}

// BenchmarkLookupLast finds the last of 2000 users, as the first request of
// a user added late does on a machine with many.
func BenchmarkLookupLast(b *testing.B) {
	p := filepath.Join(b.TempDir(), "passwd")
	var data strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&data, "user%04d:x:%d:%d::/home/user%04d:/bin/bash\n", i, 20000+i, 20000+i, i)
	}
	if err := os.WriteFile(p, []byte(data.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Lookup(p, "user1999"); err != nil {
			b.Fatal(err)
		}
	}
}
