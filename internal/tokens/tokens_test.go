package tokens

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCreateAuthenticateRevoke(t *testing.T) {
	dir := t.TempDir()
	s, err := open(t, dir)
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
	s, _ := open(t, dir)
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

// open opens a store that the test closes (inotify instances are scarce).
func open(t testing.TB, dir string) (*Store, error) {
	s, err := Open(dir)
	if err == nil {
		t.Cleanup(func() { s.Close() })
	}
	return s, err
}

// eventually retries check for up to a second: another store's change
// reaches a running one through an inotify event.
func eventually(check func() error) error {
	deadline := time.Now().Add(time.Second)
	for {
		err := check()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(time.Millisecond)
	}
}

// A second process (here: a second Store on the same directory, as `octo
// token create` is to a running server) sees tokens created and revoked by the other.
func TestTwoStoresSeeEachOther(t *testing.T) {
	dir := t.TempDir()
	server, _ := open(t, dir)
	if server.watch == nil {
		// inotify instances are limited per user (fs.inotify.max_user_instances);
		// the store then stats the file on every lookup, which this test covers too.
		t.Log("no inotify watch here: testing the stat fallback")
	}
	cli, _ := open(t, dir)
	secret, tok, err := cli.Create("carol", "", false)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := eventually(func() error { _, err := server.Authenticate(secret); return err }); err != nil {
		t.Fatalf("server does not see a token created by another store: %v", err)
	}
	if _, err := cli.Revoke(tok.ID); err != nil {
		t.Fatal(err)
	}
	err = eventually(func() error {
		if _, err := server.Authenticate(secret); !errors.Is(err, ErrInvalid) {
			return fmt.Errorf("still accepted (%v)", err)
		}
		return nil
	})
	if err != nil {
		t.Errorf("server accepts a token revoked by another store: %v", err)
	}
	t.Logf("create and revoke seen within %v", time.Since(start))
	// A file replaced behind the store's back (an editor, a restore) counts too.
	os.WriteFile(filepath.Join(dir, FileName), []byte(`{"tokens":[]}`), 0o600)
	secret2, _, _ := cli.Create("dave", "", false)
	if err := eventually(func() error { _, err := server.Authenticate(secret2); return err }); err != nil {
		t.Errorf("after the file was rewritten: %v", err)
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
			defer s.Close()
			if _, _, err := s.Create("u", string(rune('a'+i)), false); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	s, _ := open(t, dir)
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
	s, _ := open(t, dir)
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
	other, _ := open(t, dir)
	list, _ := other.List()
	if len(list) != 1 || list[0].LastUsed.IsZero() || time.Since(list[0].LastUsed) > time.Minute {
		t.Errorf("after Flush the file has %+v, want a recent last_used", list)
	}
}

func TestCorruptFileIsAnError(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, FileName), []byte("{not json"), 0o600)
	if _, err := open(t, dir); err == nil || !strings.Contains(err.Error(), FileName) {
		t.Errorf("Open(corrupt) = %v, want an error naming the file", err)
	}
}

func BenchmarkAuthenticate(b *testing.B) {
	s, _ := open(b, b.TempDir())
	secret, _, _ := s.Create("u", "", false)
	for b.Loop() {
		if _, err := s.Authenticate(secret); err != nil {
			b.Fatal(err)
		}
	}
}
