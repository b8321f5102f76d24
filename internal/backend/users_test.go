package backend

import (
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"octo/internal/config"
)

// usersWith is NewUsers(policy) reading login shells from a passwd file
// with text, and with no overflow ids, so that the rest of the policy can
// be tried on nobody, the one unprivileged user every system has.
func usersWith(t *testing.T, policy config.Users, passwd string) *Users {
	t.Helper()
	s := NewUsers(policy)
	s.passwd = filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(s.passwd, []byte(passwd), 0o644); err != nil {
		t.Fatal(err)
	}
	s.overflowUID, s.overflowGID = 1<<32-2, 1<<32-2
	return s
}

func TestUsersPolicy(t *testing.T) {
	nobody, err := user.Lookup("nobody")
	if err != nil {
		skip(t, "TestUsersPolicy: needs a user called nobody")
	}
	grp, err := user.LookupGroupId(nobody.Gid)
	if err != nil {
		skip(t, "TestUsersPolicy: needs nobody's primary group")
	}
	shell := func(sh string) string {
		return "nobody:x:" + nobody.Uid + ":" + nobody.Gid + ":nobody:/nonexistent:" + sh + "\n"
	}
	canLogin := "root:x:0:0:root:/root:/bin/bash\n" + shell("/bin/sh")
	for _, tc := range []struct {
		name   string
		policy config.Users
		passwd string
		user   string
		ok     bool
	}{
		{"defaults serve uid >= min_uid", config.Users{MinUID: 1000}, canLogin, "nobody", true},
		{"defaults refuse root", config.Users{MinUID: 0}, canLogin, "root", false},
		{"below min_uid", config.Users{MinUID: 1000}, canLogin, "daemon", false},
		{"listed below min_uid", config.Users{MinUID: 1000, Allow: []string{"daemon"}}, "", "daemon", true},
		{"listed root", config.Users{MinUID: 1000, Allow: []string{"root"}}, "", "root", true},
		{"allow list excludes others", config.Users{MinUID: 1000, Allow: []string{"daemon"}}, canLogin, "nobody", false},
		{"group member", config.Users{MinUID: 1000, Group: grp.Name}, canLogin, "nobody", true},
		{"not a group member", config.Users{MinUID: 1000, Group: "root"}, canLogin, "nobody", false},
		{"group does not exist", config.Users{MinUID: 1000, Group: "no-such-group-octo"}, canLogin, "nobody", false},
		{"no such user", config.Users{MinUID: 0}, canLogin, "no-such-user-octo", false},
		{"shell nologin", config.Users{MinUID: 1000}, shell("/usr/sbin/nologin"), "nobody", false},
		{"shell /sbin/nologin", config.Users{MinUID: 1000}, shell("/sbin/nologin"), "nobody", false},
		{"shell false", config.Users{MinUID: 1000}, shell("/bin/false"), "nobody", false},
		{"empty shell is /bin/sh", config.Users{MinUID: 1000}, shell(""), "nobody", true},
		{"no passwd entry to check", config.Users{MinUID: 1000}, "root:x:0:0:root:/root:/bin/bash\n", "nobody", false},
		{"nologin but listed", config.Users{MinUID: 1000, Allow: []string{"nobody"}}, shell("/usr/sbin/nologin"), "nobody", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := usersWith(t, tc.policy, tc.passwd).Lookup(tc.user)
			if tc.ok && (err != nil || u.Name != tc.user) {
				t.Errorf("Lookup(%s) = %+v, %v; want served", tc.user, u, err)
			}
			if !tc.ok && !errors.Is(err, ErrUserNotServed) {
				t.Errorf("Lookup(%s) = %+v, %v; want ErrUserNotServed", tc.user, u, err)
			}
		})
	}
	u, err := usersWith(t, config.Users{MinUID: 1000}, canLogin).LookupUID(65534)
	if err != nil || u.Name != nobody.Username {
		t.Errorf("LookupUID(65534) = %+v, %v; want nobody", u, err)
	}
}

// The overflow uid and gid (65534 here) are never served unless listed by
// name, whatever the shell: a daemon running as nobody is nobody's user.
func TestOverflowIDsNotServed(t *testing.T) {
	nobody, err := user.Lookup("nobody")
	if err != nil || nobody.Uid != "65534" {
		skip(t, "TestOverflowIDsNotServed: needs nobody with uid 65534")
	}
	passwd := "nobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n"
	s := usersWith(t, config.Users{MinUID: 1000}, passwd)
	s.overflowUID, s.overflowGID = overflowID("/proc/sys/kernel/overflowuid"), overflowID("/proc/sys/kernel/overflowgid")
	if s.overflowUID != 65534 {
		t.Fatalf("overflow uid read as %d, want the kernel's default 65534", s.overflowUID)
	}
	for _, lookup := range []func() (User, error){
		func() (User, error) { return s.Lookup("nobody") },
		func() (User, error) { return s.LookupUID(65534) },
	} {
		if u, err := lookup(); !errors.Is(err, ErrUserNotServed) || !strings.Contains(err.Error(), "overflow") {
			t.Errorf("nobody with a login shell: %+v, %v; want not served, saying overflow uid", u, err)
		}
	}
	listed := usersWith(t, config.Users{MinUID: 1000, Allow: []string{"nobody"}}, passwd)
	listed.overflowUID, listed.overflowGID = 65534, 65534
	if _, err := listed.Lookup("nobody"); err != nil {
		t.Errorf("nobody listed in users.allow: %v, want served", err)
	}
	// A served user whose primary group is the overflow gid is refused too.
	s.overflowUID = 1<<32 - 2
	if _, err := s.Lookup("nobody"); !errors.Is(err, ErrUserNotServed) {
		t.Errorf("a user in the overflow group: %v, want not served", err)
	}
}

// skip skips a test that cannot run here, but fails it under CI=true, where
// every test must run.
func skip(t *testing.T, reason string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: not skipping)", reason)
	}
	t.Skip(reason)
}
