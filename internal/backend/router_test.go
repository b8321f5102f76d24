package backend

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"octo/internal/config"
)

func listenUnix(t *testing.T, path string) net.Listener {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func TestSocketPath(t *testing.T) {
	r, err := NewRouter(RouterConfig{Mode: config.ModeLocal,
		Local:     config.Local{SocketDir: "/run/octo", UserSocket: "/run/user/{uid}/octo-agent.sock"},
		Container: "/run/octo/containers", DevSocket: ""})
	if err != nil {
		t.Fatal(err)
	}
	u := User{Name: "alice", UID: 1001}
	for _, tc := range []struct {
		p    Placement
		want string
	}{
		{PlacementSystem, "/run/octo/agent-alice.sock"},
		{PlacementUser, "/run/user/1001/octo-agent.sock"},
		{PlacementContainer, "/run/octo/containers/alice/agent.sock"},
		{"bogus", ""},
	} {
		if got := r.SocketPath(tc.p, u); got != tc.want {
			t.Errorf("SocketPath(%s) = %q, want %q", tc.p, got, tc.want)
		}
	}
}

func TestLocalEndpoint(t *testing.T) {
	dir := t.TempDir()
	cfg := RouterConfig{Mode: config.ModeLocal, Local: config.Local{
		SocketDir: filepath.Join(dir, "sys"), UserSocket: filepath.Join(dir, "user", "{uid}", "agent.sock")}}
	r, _ := NewRouter(cfg)
	alice := User{Name: "alice", UID: 1001}
	bob := User{Name: "bob", UID: 1002}
	carol := User{Name: "carol", UID: 1003}
	listenUnix(t, filepath.Join(dir, "sys", "agent-alice.sock"))
	listenUnix(t, filepath.Join(dir, "user", "1001", "agent.sock")) // alice has both: system wins
	listenUnix(t, filepath.Join(dir, "user", "1002", "agent.sock"))
	os.WriteFile(filepath.Join(dir, "sys", "agent-carol.sock"), nil, 0o644) // not a socket

	for _, tc := range []struct {
		u       User
		want    Placement
		wantErr []string
	}{
		{alice, PlacementSystem, nil},
		{bob, PlacementUser, nil},
		{carol, "", []string{"systemctl enable --now octo-agent@carol.socket", "systemctl --user enable --now octo-user.socket", "not a socket"}},
		{User{Name: "dave", UID: 1004}, "", []string{"no agent socket for dave", "octo-agent@dave.socket"}},
		{User{Name: "../x", UID: 1005}, "", []string{"cannot name an agent socket"}},
	} {
		ep, err := r.Endpoint(context.Background(), tc.u)
		if tc.wantErr == nil {
			if err != nil || ep.Placement != tc.want || ep.Socket != r.SocketPath(tc.want, tc.u) {
				t.Errorf("Endpoint(%s) = %+v, %v; want placement %s", tc.u.Name, ep, err, tc.want)
			}
			continue
		}
		var be *Error
		if !errors.As(err, &be) || be.Code != CodeUnavailable {
			t.Errorf("Endpoint(%s) error = %#v, want an agent_unavailable *Error", tc.u.Name, err)
			continue
		}
		for _, w := range tc.wantErr {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Endpoint(%s) error %q does not contain %q", tc.u.Name, err, w)
			}
		}
	}
}

// engine is a ContainerRuntime that starts nothing: it records Ensure calls
// and answers Ping as told. It stands in for the container package, which
// is tested against a real engine on its own.
type engine struct {
	pingErr error
	ensured []string
}

func (e *engine) Ping(context.Context) error { return e.pingErr }
func (e *engine) Ensure(_ context.Context, u User, sock string) error {
	e.ensured = append(e.ensured, u.Name+"="+sock)
	return nil
}

func TestAutoAndContainer(t *testing.T) {
	dir := t.TempDir()
	local := config.Local{SocketDir: filepath.Join(dir, "sys"), UserSocket: ""}
	listenUnix(t, filepath.Join(dir, "sys", "agent-alice.sock"))
	alice, bob := User{Name: "alice", UID: 1001}, User{Name: "bob", UID: 1002}

	if _, err := NewRouter(RouterConfig{Mode: config.ModeAuto, Local: local}); err == nil || !strings.Contains(err.Error(), "needs a container runtime") {
		t.Errorf("NewRouter(auto, no runtime) = %v, want a clear error", err)
	}
	e := &engine{}
	r, _ := NewRouter(RouterConfig{Mode: config.ModeAuto, Local: local, Container: filepath.Join(dir, "c"), Runtime: e})
	if ep, err := r.Endpoint(context.Background(), alice); err != nil || ep.Placement != PlacementSystem {
		t.Errorf("auto, local socket present: %+v, %v; want system", ep, err)
	}
	if ep, err := r.Endpoint(context.Background(), bob); err != nil || ep.Placement != PlacementContainer {
		t.Errorf("auto, no local socket: %+v, %v; want container", ep, err)
	}
	if want := "bob=" + filepath.Join(dir, "c", "bob", "agent.sock"); len(e.ensured) != 1 || e.ensured[0] != want {
		t.Errorf("Ensure calls = %v, want [%s]", e.ensured, want)
	}
	e.pingErr = errors.New("dial unix /var/run/docker.sock: connection refused")
	_, err := r.Endpoint(context.Background(), bob)
	for _, w := range []string{"no agent socket for bob", "container engine does not answer", "docker.sock"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("auto, nothing reachable: error %v, want it to contain %q", err, w)
		}
	}
	rc, _ := NewRouter(RouterConfig{Mode: config.ModeContainer, Local: local, Container: filepath.Join(dir, "c"), Runtime: e})
	if ep, err := rc.Endpoint(context.Background(), alice); err != nil || ep.Placement != PlacementContainer {
		t.Errorf("container mode ignores local sockets: got %+v, %v", ep, err)
	}
}
