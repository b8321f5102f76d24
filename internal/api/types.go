package api

import (
	"fmt"
	"time"

	"octo/internal/agentrpc"
)

// The API's JSON shapes: snake_case views of the agent protocol's types.

type callerJSON struct {
	User  string `json:"user"`
	Admin bool   `json:"admin"`
	Via   string `json:"via"`
}

type statusJSON struct {
	Version   string     `json:"version"`
	Mode      string     `json:"mode"`
	Caller    callerJSON `json:"caller"`
	User      string     `json:"user"`          // the user acted for
	Placement string     `json:"placement"`     // where their agent runs
	Job       *jobJSON   `json:"job,omitempty"` // placement slurm: the agent's job
	Agent     infoJSON   `json:"agent"`
}

type jobJSON struct {
	ID   string `json:"id"`
	Node string `json:"node"`
}

type infoJSON struct {
	User            string    `json:"user"`
	UID             uint32    `json:"uid"`
	GID             uint32    `json:"gid"`
	Home            string    `json:"home"`
	Workspace       string    `json:"workspace"`
	Version         string    `json:"version"`
	PID             int       `json:"pid"`
	StartTime       time.Time `json:"start_time"`
	RunningSessions int       `json:"running_sessions"`
}

func infoOf(i agentrpc.Info) infoJSON {
	return infoJSON{i.User, i.UID, i.GID, i.Home, i.Workspace, i.Version, i.PID, i.StartTime, i.RunningSessions}
}

type startJSON struct {
	Command []string          `json:"command"`
	Cwd     string            `json:"cwd"`
	Env     map[string]string `json:"env"`
	TTY     bool              `json:"tty"`
	Name    string            `json:"name"`
	Rows    uint16            `json:"rows"`
	Cols    uint16            `json:"cols"`
}

type sessionJSON struct {
	ID         string    `json:"id"`
	Name       string    `json:"name,omitempty"`
	Command    []string  `json:"command"`
	Cwd        string    `json:"cwd"`
	TTY        bool      `json:"tty"`
	PID        int       `json:"pid,omitempty"`
	State      string    `json:"state"`
	ExitCode   *int      `json:"exit_code,omitempty"`
	Signal     string    `json:"signal,omitempty"`
	Error      string    `json:"error,omitempty"`
	StartTime  time.Time `json:"start_time"`
	EndTime    time.Time `json:"end_time,omitzero"`
	OutputSize int64     `json:"output_size"`
}

func sessionOf(s agentrpc.Session) sessionJSON {
	var code *int
	if s.State == agentrpc.StateExited && s.Signal == "" {
		code = &s.ExitCode
	}
	return sessionJSON{s.ID, s.Name, s.Argv, s.Cwd, s.TTY, s.PID, string(s.State), code,
		s.Signal, s.Error, s.StartTime, s.EndTime, s.OutputSize}
}

type sessionListJSON struct {
	Sessions []sessionJSON `json:"sessions"`
}

type signalJSON struct {
	Signal string `json:"signal"`
}

type resizeJSON struct {
	Rows uint16 `json:"rows"`
	Cols uint16 `json:"cols"`
}

type fileJSON struct {
	Name    string    `json:"name"`
	Type    string    `json:"type"`
	Size    int64     `json:"size"`
	Mode    string    `json:"mode"` // octal, e.g. "0644"
	ModTime time.Time `json:"mod_time"`
	Target  string    `json:"target,omitempty"`
}

func fileOf(f agentrpc.FileInfo) fileJSON {
	return fileJSON{f.Name, string(f.Type), f.Size, fmt.Sprintf("%04o", uint32(f.Mode.Perm())), f.ModTime, f.Target}
}

type dirJSON struct {
	Path    string     `json:"path"`
	Type    string     `json:"type"` // "dir"
	Entries []fileJSON `json:"entries"`
}
