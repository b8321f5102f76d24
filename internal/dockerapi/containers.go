package dockerapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// ContainerConfig is the body of a create request: the container's Config
// with its HostConfig inline, as the engine API expects.
type ContainerConfig struct {
	Image           string
	Entrypoint      []string          `json:",omitempty"`
	Cmd             []string          `json:",omitempty"`
	User            string            `json:",omitempty"` // "uid:gid"
	Env             []string          `json:",omitempty"`
	WorkingDir      string            `json:",omitempty"`
	Labels          map[string]string `json:",omitempty"`
	StopTimeout     *int              `json:",omitempty"` // seconds
	NetworkDisabled bool              `json:",omitempty"`
	HostConfig      HostConfig
}

// HostConfig is the host side of a container: mounts, limits, security.
type HostConfig struct {
	Binds          []string          `json:",omitempty"` // "host:container[:ro]"
	NetworkMode    string            `json:",omitempty"`
	Memory         int64             `json:",omitempty"` // bytes
	NanoCPUs       int64             `json:"NanoCpus,omitempty"`
	PidsLimit      *int64            `json:",omitempty"`
	AutoRemove     bool              `json:",omitempty"`
	ReadonlyRootfs bool              `json:",omitempty"`
	Tmpfs          map[string]string `json:",omitempty"` // path -> mount options
	CapDrop        []string          `json:",omitempty"`
	SecurityOpt    []string          `json:",omitempty"`
	Init           *bool             `json:",omitempty"`
}

// ContainerCreate creates a container named name ("" lets the engine pick
// one) and returns its ID. A missing image gives ErrNotFound; a name in use,
// ErrConflict.
func (c *Client) ContainerCreate(ctx context.Context, name string, cfg ContainerConfig) (string, error) {
	var q url.Values
	if name != "" {
		q = url.Values{"name": {name}}
	}
	var r struct {
		ID       string `json:"Id"`
		Warnings []string
	}
	if err := c.call(ctx, http.MethodPost, "/containers/create", q, cfg, &r); err != nil {
		return "", err
	}
	return r.ID, nil
}

// ContainerStart starts a created container.
func (c *Client) ContainerStart(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodPost, "/containers/"+url.PathEscape(id)+"/start", nil, nil, nil)
}

// ContainerState is the runtime state of a container.
type ContainerState struct {
	Status     string // "created", "running", "exited", ...
	Running    bool
	ExitCode   int
	Pid        int
	Error      string
	StartedAt  string
	FinishedAt string
}

// ContainerJSON is the reply of inspect, reduced to what octo reads.
type ContainerJSON struct {
	ID     string `json:"Id"`
	Name   string
	Image  string
	State  ContainerState
	Config struct {
		User   string
		Labels map[string]string
		Cmd    []string
	}
	HostConfig HostConfig
	Mounts     []struct {
		Source      string
		Destination string
		RW          bool
	}
}

// ContainerInspect returns a container's configuration and state.
func (c *Client) ContainerInspect(ctx context.Context, id string) (ContainerJSON, error) {
	var r ContainerJSON
	err := c.call(ctx, http.MethodGet, "/containers/"+url.PathEscape(id)+"/json", nil, nil, &r)
	return r, err
}

// ContainerWait blocks until the container is no longer running (or ctx
// ends) and returns its exit status.
func (c *Client) ContainerWait(ctx context.Context, id string) (int, error) {
	var r struct {
		StatusCode int
		Error      *struct{ Message string }
	}
	q := url.Values{"condition": {"not-running"}}
	if err := c.call(ctx, http.MethodPost, "/containers/"+url.PathEscape(id)+"/wait", q, nil, &r); err != nil {
		return 0, err
	}
	if r.Error != nil && r.Error.Message != "" {
		return r.StatusCode, fmt.Errorf("wait for container %s: %s", id, r.Error.Message)
	}
	return r.StatusCode, nil
}

// ContainerStop stops a container, killing it after timeout. Stopping a
// stopped container is not an error.
func (c *Client) ContainerStop(ctx context.Context, id string, timeout time.Duration) error {
	q := url.Values{"t": {strconv.Itoa(int(timeout / time.Second))}}
	err := c.call(ctx, http.MethodPost, "/containers/"+url.PathEscape(id)+"/stop", q, nil, nil)
	if isStatus(err, http.StatusNotModified) {
		return nil
	}
	return err
}

// ContainerKill sends signal (e.g. "KILL") to a running container.
func (c *Client) ContainerKill(ctx context.Context, id, signal string) error {
	q := url.Values{"signal": {signal}}
	return c.call(ctx, http.MethodPost, "/containers/"+url.PathEscape(id)+"/kill", q, nil, nil)
}

// ContainerRemove removes a container; force kills it first if it runs.
func (c *Client) ContainerRemove(ctx context.Context, id string, force bool) error {
	q := url.Values{"force": {strconv.FormatBool(force)}, "v": {"true"}}
	return c.call(ctx, http.MethodDelete, "/containers/"+url.PathEscape(id), q, nil, nil)
}

// Container is an entry of ContainerList.
type Container struct {
	ID     string `json:"Id"`
	Names  []string
	Image  string
	State  string // "running", "exited", "created", ...
	Status string
	Labels map[string]string
}

// ContainerList lists containers, stopped ones too, that carry every label
// given as "key=value" (or "key" for any value).
func (c *Client) ContainerList(ctx context.Context, labels ...string) ([]Container, error) {
	q := url.Values{"all": {"1"}}
	if len(labels) > 0 {
		f, err := json.Marshal(map[string][]string{"label": labels})
		if err != nil {
			return nil, err
		}
		q.Set("filters", string(f))
	}
	var r []Container
	err := c.call(ctx, http.MethodGet, "/containers/json", q, nil, &r)
	return r, err
}

// ContainerLogs returns the last tail lines (all when tail <= 0) a container
// wrote to its stdout and stderr, demultiplexed.
func (c *Client) ContainerLogs(ctx context.Context, id string, tail int) (stdout, stderr []byte, err error) {
	q := url.Values{"stdout": {"1"}, "stderr": {"1"}, "tail": {"all"}}
	if tail > 0 {
		q.Set("tail", strconv.Itoa(tail))
	}
	resp, err := c.do(ctx, http.MethodGet, "/containers/"+url.PathEscape(id)+"/logs", q, nil)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	var o, e limitedBuffer
	o.max, e.max = maxLogBytes, maxLogBytes
	if err := Demux(resp.Body, &o, &e); err != nil {
		return o.b, e.b, fmt.Errorf("read logs of container %s: %w", id, err)
	}
	return o.b, e.b, nil
}

// maxLogBytes bounds each stream ContainerLogs keeps.
const maxLogBytes = 1 << 20

// limitedBuffer keeps the first max bytes written and drops the rest.
type limitedBuffer struct {
	b   []byte
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// Image is the reply of ImageInspect, reduced to what octo reads.
type Image struct {
	ID       string `json:"Id"`
	RepoTags []string
	Size     int64
}

// ImageInspect describes a local image; a missing one gives ErrNotFound.
func (c *Client) ImageInspect(ctx context.Context, name string) (Image, error) {
	var r Image
	err := c.call(ctx, http.MethodGet, "/images/"+url.PathEscape(name)+"/json", nil, nil, &r)
	return r, err
}

// ImageImport creates the image repo:tag from a tarball of a root
// filesystem, like `docker import`.
func (c *Client) ImageImport(ctx context.Context, rootfs io.Reader, repo, tag string) error {
	// Podman ignores the tag parameter but honours a tag inside repo, which
	// dockerd accepts too.
	q := url.Values{"fromSrc": {"-"}, "repo": {repo + ":" + tag}}
	resp, err := c.do(ctx, http.MethodPost, "/images/create", q, rootfs)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// The reply is a stream of JSON progress messages; an error is one of them.
	dec := json.NewDecoder(resp.Body)
	for {
		var m struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("import image %s:%s: %w", repo, tag, err)
		}
		if m.Error != "" {
			return fmt.Errorf("import image %s:%s: %s", repo, tag, m.Error)
		}
	}
}

func isStatus(err error, status int) bool {
	e, ok := err.(*Error)
	return ok && e.Status == status
}

// ImageRemove removes a local image.
func (c *Client) ImageRemove(ctx context.Context, name string, force bool) error {
	q := url.Values{"force": {strconv.FormatBool(force)}}
	return c.call(ctx, http.MethodDelete, "/images/"+url.PathEscape(name), q, nil, nil)
}
