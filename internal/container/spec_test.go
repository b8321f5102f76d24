package container

import (
	"slices"
	"strings"
	"testing"
	"time"

	"octo/internal/backend"
	"octo/internal/config"
)

func TestContainerName(t *testing.T) {
	tests := []struct {
		user backend.User
		want string
	}{
		{backend.User{Name: "alice", UID: 1000}, "octo-agent-alice"},
		{backend.User{Name: "a.b-c_d", UID: 1001}, "octo-agent-a.b-c_d"},
		{backend.User{Name: "jo@corp", UID: 1002}, "octo-agent-jo_corp-1002"},
		{backend.User{Name: "jo_corp", UID: 1003}, "octo-agent-jo_corp"},
		{backend.User{Name: "-x", UID: 1004}, "octo-agent-_x-1004"},
		{backend.User{Name: "smb$", UID: 1005}, "octo-agent-smb_-1005"},
	}
	for _, tt := range tests {
		if got := containerName(tt.user); got != tt.want {
			t.Errorf("containerName(%q) = %q, want %q", tt.user.Name, got, tt.want)
		}
	}
}

func TestWorkspace(t *testing.T) {
	u := backend.User{Name: "alice", UID: 1000, Home: "/home/alice"}
	tests := []struct {
		pattern, want, wantErr string
	}{
		{"{home}", "/home/alice", ""},
		{"/srv/octo/{user}", "/srv/octo/alice", ""},
		{"{home}/work/", "/home/alice/work", ""},
		{"/srv/{user}/../{user}", "/srv/alice", ""},
		{"work/{user}", "", "not an absolute path"},
		{"/", "", "refusing to mount the root"},
		{"{home}/..", "", ""},
		{"/srv/a:b/{user}", "", "cannot be mounted"},
	}
	for _, tt := range tests {
		got, err := workspace(tt.pattern, u)
		if tt.pattern == "{home}/.." {
			if got != "/home" || err != nil {
				t.Errorf("workspace(%q) = %q, %v; want /home", tt.pattern, got, err)
			}
			continue
		}
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("workspace(%q) = %q, %v; want error containing %q", tt.pattern, got, err, tt.wantErr)
			}
			continue
		}
		if got != tt.want || err != nil {
			t.Errorf("workspace(%q) = %q, %v; want %q", tt.pattern, got, err, tt.want)
		}
	}
}

func TestSpec(t *testing.T) {
	cfg := config.Container{
		Image: "img:1", AgentBinary: "/usr/lib/octo/octo-agent", Network: "none",
		Memory: 256 << 20, CPUs: 1.5, PIDs: 100, IdleTimeout: config.Duration{Duration: 90 * time.Second},
	}
	u := backend.User{Name: "alice", UID: 1000, GID: 1001, Home: "/home/alice"}
	s := spec(cfg, u, "/home/alice", "/run/octo/containers/alice", "agent.sock", 999)

	flags := map[string]string{}
	for i := 1; i+1 < len(s.Cmd); i += 2 {
		flags[s.Cmd[i]] = s.Cmd[i+1]
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"Image", s.Image, "img:1"},
		{"Entrypoint", strings.Join(s.Entrypoint, " "), agentPath},
		{"Cmd[0]", s.Cmd[0], "serve"},
		{"User", s.User, "1000:1001"},
		{"WorkingDir", s.WorkingDir, "/home/alice"},
		{"--socket", flags["--socket"], "/run/octo-agent/agent.sock"},
		{"--socket-mode", flags["--socket-mode"], "0666"},
		{"--workspace", flags["--workspace"], "/home/alice"},
		{"--state-dir", flags["--state-dir"], "/home/alice/.local/state/octo-agent-container"},
		{"--user", flags["--user"], "alice"},
		{"--home", flags["--home"], "/home/alice"},
		{"--allow-user", flags["--allow-user"], "999"},
		{"--idle-timeout", flags["--idle-timeout"], "1m30s"},
		{"label user", s.Labels[LabelUser], "alice"},
		{"label managed", s.Labels[LabelManaged], "1"},
		{"label uid", s.Labels[LabelUID], "1000"},
		{"NetworkMode", s.HostConfig.NetworkMode, "none"},
		{"Memory", s.HostConfig.Memory, int64(256 << 20)},
		{"NanoCPUs", s.HostConfig.NanoCPUs, int64(1_500_000_000)},
		{"PidsLimit", *s.HostConfig.PidsLimit, int64(100)},
		{"ReadonlyRootfs", s.HostConfig.ReadonlyRootfs, true},
		{"CapDrop", strings.Join(s.HostConfig.CapDrop, ","), "ALL"},
		{"Init", s.HostConfig.Init != nil && *s.HostConfig.Init, true},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	wantBinds := []string{
		"/usr/lib/octo/octo-agent:" + agentPath + ":ro",
		"/home/alice:/home/alice",
		"/run/octo/containers/alice:/run/octo-agent",
	}
	if !slices.Equal(s.HostConfig.Binds, wantBinds) {
		t.Errorf("Binds = %q, want %q", s.HostConfig.Binds, wantBinds)
	}

	// No limits configured: none sent, and no idle flag.
	s = spec(config.Container{Image: "i", AgentBinary: "/a", Network: "bridge"}, u, "/w", "/s", "agent.sock", 0)
	if s.HostConfig.PidsLimit != nil || s.HostConfig.Memory != 0 || s.HostConfig.NanoCPUs != 0 {
		t.Errorf("unlimited spec has limits: %+v", s.HostConfig)
	}
	if slices.Contains(s.Cmd, "--idle-timeout") {
		t.Errorf("Cmd = %q, want no --idle-timeout when idle_timeout is 0", s.Cmd)
	}
	if s.HostConfig.NetworkMode != "bridge" {
		t.Errorf("NetworkMode = %q, want bridge", s.HostConfig.NetworkMode)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	good := config.Container{Image: "i", AgentBinary: "/a", SocketDir: "/s"}
	tests := []struct {
		name string
		edit func(*config.Container)
		want string
	}{
		{"no image", func(c *config.Container) { c.Image = "" }, "image"},
		{"relative agent", func(c *config.Container) { c.AgentBinary = "octo-agent" }, "agent_binary"},
		{"relative socket dir", func(c *config.Container) { c.SocketDir = "run" }, "socket_dir"},
		{"colon", func(c *config.Container) { c.SocketDir = "/a:b" }, "':'"},
		{"negative", func(c *config.Container) { c.PIDs = -1 }, "negative"},
	}
	for _, tt := range tests {
		cfg := good
		tt.edit(&cfg)
		r, err := New(cfg, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: New = %v, %v; want error containing %q", tt.name, r, err, tt.want)
		}
	}
	r, err := New(good, nil)
	if err != nil {
		t.Fatalf("New(%+v) = %v", good, err)
	}
	r.Close()
	if r.cfg.Network != "none" || r.cfg.Workspace != "{home}" {
		t.Errorf("defaults: network %q workspace %q, want none and {home}", r.cfg.Network, r.cfg.Workspace)
	}
}
