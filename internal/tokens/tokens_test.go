package tokens

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCreateAuthenticateRevoke(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	secret, tok, err := s.Create("alice", "laptop", false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, Prefix) || len(secret) != len(Prefix)+43 {
		t.Errorf("secret %q: want %s + 43 base64url characters (32 bytes)", secret, Prefix)
	}
	got, err := s.Authenticate(secret)
	if err != nil {
		t.Fatalf("Authenticate(new token) = %v", err)
	}
	if got.User != "alice" || got.Name != "laptop" || got.Admin || got.ID != tok.ID {
		t.Errorf("Authenticate = %+v, want alice's laptop token %s", got, tok.ID)
	}
	if got.LastUsed.IsZero() {
		t.Error("LastUsed not set by Authenticate")
	}
	for _, bad := range []string{"", "octo_", secret + "x", secret[:len(secret)-1], strings.ToUpper(secret), "Bearer " + secret} {
		if _, err := s.Authenticate(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Authenticate(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := s.Revoke(tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(secret); !errors.Is(err, ErrInvalid) {
		t.Errorf("Authenticate(revoked) = %v, want ErrInvalid", err)
	}
	if _, err := s.Revoke(tok.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Revoke twice = %v, want ErrNotFound", err)
	}
}

func TestFileHoldsOnlyHashes(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir)
	secret, _, err := s.Create("bob", "", true)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("token file mode = %o, want 600", got)
	}
	data, _ := os.ReadFile(filepath.Join(dir, FileName))
	if strings.Contains(string(data), secret[len(Prefix):]) {
		t.Error("token file contains the secret")
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

// A second process (here: a second Store on the same directory, as `octo
// token create` is to a running server) sees tokens created and revoked by the other.
func TestTwoStoresSeeEachOther(t *testing.T) {
	dir := t.TempDir()
	server, _ := Open(dir)
	cli, _ := Open(dir)
	secret, tok, err := cli.Create("carol", "", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := server.Authenticate(secret); err != nil {
		t.Fatalf("server does not see a token created by another store: %v", err)
	}
	if _, err := cli.Revoke(tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Authenticate(secret); !errors.Is(err, ErrInvalid) {
		t.Errorf("server accepts a token revoked by another store: %v", err)
	}
}

func TestConcurrentCreatesLoseNothing(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	const n = 20
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(dir) // a store per goroutine: only the file lock serialises them
			if err != nil {
				t.Error(err)
				return
			}
			if _, _, err := s.Create("u", string(rune('a'+i)), false); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	s, _ := Open(dir)
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != n {
		t.Errorf("got %d tokens after %d concurrent creates", len(list), n)
	}
}

func TestLastUseIsDebouncedAndFlushed(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir)
	secret, _, _ := s.Create("dave", "", false)
	before, _ := os.Stat(filepath.Join(dir, FileName))
	for range 100 {
		if _, err := s.Authenticate(secret); err != nil {
			t.Fatal(err)
		}
	}
	after, _ := os.Stat(filepath.Join(dir, FileName))
	if !os.SameFile(before, after) {
		t.Error("token file rewritten on authentication; want at most once a minute")
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	other, _ := Open(dir)
	list, _ := other.List()
	if len(list) != 1 || list[0].LastUsed.IsZero() || time.Since(list[0].LastUsed) > time.Minute {
		t.Errorf("after Flush the file has %+v, want a recent last_used", list)
	}
}

func TestCorruptFileIsAnError(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, FileName), []byte("{not json"), 0o600)
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), FileName) {
		t.Errorf("Open(corrupt) = %v, want an error naming the file", err)
	}
}

func BenchmarkAuthenticate(b *testing.B) {
	s, _ := Open(b.TempDir())
	secret, _, _ := s.Create("u", "", false)
	for b.Loop() {
		if _, err := s.Authenticate(secret); err != nil {
			b.Fatal(err)
		}
	}
}
