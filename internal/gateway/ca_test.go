package gateway

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestCAPersists(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "sub", "ca.key")
	ca, err := LoadOrCreateCA(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("CA key mode = %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	again, err := LoadOrCreateCA(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	if again.Fingerprint() != ca.Fingerprint() {
		t.Errorf("reloaded CA fingerprint %s, want %s", again.Fingerprint(), ca.Fingerprint())
	}
	// Half a CA (one file lost) is an error, never a silent new CA.
	os.Remove(key)
	if _, err := LoadOrCreateCA(cert, key); err == nil {
		t.Error("LoadOrCreateCA without its key = nil error, want one")
	}
}

func TestRedeem(t *testing.T) {
	var ls launches
	l, token := ls.create("alice", 1001, time.Minute)
	if _, err := ls.redeem(l.ID, token+"x"); err == nil {
		t.Fatal("wrong token redeemed")
	}
	if got, err := ls.redeem(l.ID, token); err != nil || got.User != "alice" {
		t.Fatalf("redeem = %+v, %v; want alice's launch (a wrong token must not spend it)", got, err)
	}
	if _, err := ls.redeem(l.ID, token); err == nil {
		t.Error("token redeemed twice")
	}
	old, oldToken := ls.create("alice", 1001, -time.Second)
	if _, err := ls.redeem(old.ID, oldToken); err == nil {
		t.Error("expired token redeemed")
	}
	if _, err := ls.redeem("nope", token); err == nil {
		t.Error("unknown launch redeemed")
	}
}

func TestPrune(t *testing.T) {
	var ls launches
	ended, _ := ls.create("alice", 1001, time.Minute)
	ls.setJob(ended.ID, "7")
	running, _ := ls.create("alice", 1001, time.Minute)
	ls.admit(running.ID, "8")
	submitting, _ := ls.create("bob", 1002, time.Minute)
	if n := ls.prune(func(id string) bool { return id == "8" }); n != 1 {
		t.Errorf("prune removed %d launches, want 1", n)
	}
	for _, tc := range []struct {
		id   string
		want bool
	}{{ended.ID, false}, {running.ID, true}, {submitting.ID, true}} {
		if _, ok := ls.get(tc.id); ok != tc.want {
			t.Errorf("launch %s kept = %v, want %v", tc.id, ok, tc.want)
		}
	}
}
