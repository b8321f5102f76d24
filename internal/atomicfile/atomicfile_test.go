package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f.json")
	for i, tc := range []struct {
		data string
		perm os.FileMode
		o    Options
	}{
		{"first", 0o600, Options{}},
		{"second, durable", 0o640, Options{Durable: true}},
	} {
		if err := Write(p, []byte(tc.data), tc.perm, tc.o); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		b, err := os.ReadFile(p)
		fi, _ := os.Stat(p)
		if err != nil || string(b) != tc.data || fi.Mode().Perm() != tc.perm {
			t.Errorf("write %d: got %q %v (%v), want %q %v", i, b, fi.Mode().Perm(), err, tc.data, tc.perm)
		}
	}
	// A failing Prepare leaves the old file and no temporary behind.
	boom := errors.New("boom")
	err := Write(p, []byte("third"), 0o600, Options{Prepare: func(*os.File) error { return boom }})
	if !errors.Is(err, boom) {
		t.Errorf("Write with a failing Prepare: %v, want boom", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "second, durable" {
		t.Errorf("after a failed write the file holds %q, want the old contents", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("directory holds %d entries after a failed write, want only the file", len(ents))
	}
	// A directory that does not exist: an error naming the path.
	if err := Write(filepath.Join(dir, "no", "f"), nil, 0o600, Options{}); err == nil {
		t.Errorf("Write into a missing directory: no error")
	}
}
