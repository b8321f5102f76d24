package container

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"octo/internal/backend"
	"octo/internal/config"
	"octo/internal/dockerapi"
)

// containerName is the engine name of u's container: octo-agent-NAME with
// characters engines refuse replaced, and the uid appended when that changed
// the name, so that two users never share one.
func containerName(u backend.User) string {
	var b strings.Builder
	for i, r := range u.Name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			i > 0 && (r == '_' || r == '.' || r == '-')
		if ok {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	name := "octo-agent-" + b.String()
	if b.String() != u.Name {
		name += "-" + strconv.FormatUint(uint64(u.UID), 10)
	}
	return name
}

// workspace expands the [container] workspace pattern for u. The result is
// an absolute, clean path other than "/".
func workspace(pattern string, u backend.User) (string, error) {
	ws := strings.NewReplacer("{user}", u.Name, "{home}", u.Home).Replace(pattern)
	if !filepath.IsAbs(ws) {
		return "", fmt.Errorf("[container] workspace %q gives %q for %s, not an absolute path", pattern, ws, u.Name)
	}
	if strings.ContainsAny(ws, ":,\x00") {
		return "", fmt.Errorf("[container] workspace %q gives %q for %s, which cannot be mounted (it contains ':' or ',')", pattern, ws, u.Name)
	}
	ws = filepath.Clean(ws)
	if ws == "/" {
		return "", fmt.Errorf("[container] workspace %q gives / for %s; refusing to mount the root directory", pattern, u.Name)
	}
	return ws, nil
}

// stateDir is where u's agent keeps its state (session records and
// output): <workspace>/.local/state/octo-agent-container, inside the
// workspace the container mounts at the same path, which only the user may
// write (checkStateDir). Not the socket directory, which the control plane
// owns; not the local agent's ~/.local/state/octo-agent, whose lock a local
// agent of the same user may hold and whose process ids mean nothing in a
// container's pid namespace.
func stateDir(ws string) string {
	return filepath.Join(ws, ".local", "state", "octo-agent-container")
}

var initOn = true

// spec is the container that runs u's agent: the agent binary and u's
// workspace and socket directory mounted, running as u's uid:gid with the
// configured limits, no capabilities and a read-only root.
func spec(cfg config.Container, u backend.User, ws, sockDir, sockName string, ctlUID uint32) dockerapi.ContainerConfig {
	cmd := []string{
		"serve",
		"--socket", sockDirInCtr + "/" + sockName,
		"--socket-mode", "0666",
		"--workspace", ws,
		"--state-dir", stateDir(ws),
		"--user", u.Name,
		"--home", u.Home,
		"--allow-user", strconv.FormatUint(uint64(ctlUID), 10),
	}
	if cfg.IdleTimeout.Duration > 0 {
		cmd = append(cmd, "--idle-timeout", cfg.IdleTimeout.Duration.String())
	}
	hc := dockerapi.HostConfig{
		Binds: []string{
			cfg.AgentBinary + ":" + agentPath + ":ro",
			ws + ":" + ws,
			sockDir + ":" + sockDirInCtr,
		},
		NetworkMode:    cfg.Network,
		Memory:         int64(cfg.Memory),
		NanoCPUs:       int64(cfg.CPUs * 1e9),
		ReadonlyRootfs: true,
		Tmpfs:          map[string]string{"/tmp": "rw,nosuid,nodev,mode=1777"},
		CapDrop:        []string{"ALL"},
		SecurityOpt:    []string{"no-new-privileges"},
		// The engine's init (catatonit, docker-init) is PID 1: it reaps
		// sessions' orphaned children, which the agent does not wait for.
		Init: &initOn,
	}
	if cfg.PIDs > 0 {
		pids := cfg.PIDs
		hc.PidsLimit = &pids
	}
	return dockerapi.ContainerConfig{
		Image:      cfg.Image,
		Entrypoint: []string{agentPath},
		Cmd:        cmd,
		User:       fmt.Sprintf("%d:%d", u.UID, u.GID),
		WorkingDir: ws,
		Labels: map[string]string{
			LabelManaged: "1",
			LabelUser:    u.Name,
			LabelUID:     strconv.FormatUint(uint64(u.UID), 10),
		},
		HostConfig: hc,
	}
}
