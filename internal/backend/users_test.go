package backend

import (
	"errors"
	"os"
	"os/user"
	"testing"

	"octo/internal/config"
)

func TestUsersPolicy(t *testing.T) {
	nobody, err := user.Lookup("nobody")
	if err != nil {
		skip(t, "TestUsersPolicy: needs a user called nobody")
	}
	grp, err := user.LookupGroupId(nobody.Gid)
	if err != nil {
		skip(t, "TestUsersPolicy: needs nobody's primary group")
	}
	for _, tc := range []struct {
		name   string
		policy config.Users
		user   string
		ok     bool
	}{
		{"defaults serve uid >= min_uid", config.Users{MinUID: 1000}, "nobody", true},
		{"defaults refuse root", config.Users{MinUID: 0}, "root", false},
		{"below min_uid", config.Users{MinUID: 1000}, "daemon", false},
		{"listed below min_uid", config.Users{MinUID: 1000, Allow: []string{"daemon"}}, "daemon", true},
		{"listed root", config.Users{MinUID: 1000, Allow: []string{"root"}}, "root", true},
		{"allow list excludes others", config.Users{MinUID: 1000, Allow: []string{"daemon"}}, "nobody", false},
		{"group member", config.Users{MinUID: 1000, Group: grp.Name}, "nobody", true},
		{"not a group member", config.Users{MinUID: 1000, Group: "root"}, "nobody", false},
		{"group does not exist", config.Users{MinUID: 1000, Group: "no-such-group-octo"}, "nobody", false},
		{"no such user", config.Users{MinUID: 0}, "no-such-user-octo", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := NewUsers(tc.policy).Lookup(tc.user)
			if tc.ok && (err != nil || u.Name != tc.user) {
				t.Errorf("Lookup(%s) = %+v, %v; want served", tc.user, u, err)
			}
			if !tc.ok && !errors.Is(err, ErrUserNotServed) {
				t.Errorf("Lookup(%s) = %+v, %v; want ErrUserNotServed", tc.user, u, err)
			}
		})
	}
	u, err := NewUsers(config.Users{MinUID: 1000}).LookupUID(65534)
	if err != nil || u.Name != nobody.Username {
		t.Errorf("LookupUID(65534) = %+v, %v; want nobody", u, err)
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
