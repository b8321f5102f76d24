package dockerapi

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// testEngine returns a client for the engine named by OCTO_TEST_ENGINE_SOCKET
// and the image named by OCTO_TEST_IMAGE (a busybox image; see
// .ci/setup-engine.sh). It skips without them, and fails under CI=true.
func testEngine(t *testing.T) (*Client, string) {
	t.Helper()
	sock, image := os.Getenv("OCTO_TEST_ENGINE_SOCKET"), os.Getenv("OCTO_TEST_IMAGE")
	if sock == "" || image == "" {
		msg := "needs a container engine: run `eval \"$(bash .ci/setup-engine.sh)\"` as root to set OCTO_TEST_ENGINE_SOCKET and OCTO_TEST_IMAGE"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	c := New(sock)
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("OCTO_TEST_ENGINE_SOCKET=%s: %v", sock, err)
	}
	return c, image
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// uniqueLabel returns a label value no other test run uses, and removes the
// containers carrying it when the test ends.
func uniqueLabel(t *testing.T, c *Client) string {
	l := fmt.Sprintf("octo.test=%s-%d", strings.ReplaceAll(t.Name(), "/", "_"), time.Now().UnixNano())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cs, _ := c.ContainerList(ctx, l)
		for _, ct := range cs {
			c.ContainerRemove(ctx, ct.ID, true)
		}
	})
	return l
}

func labels(l string) map[string]string {
	k, v, _ := strings.Cut(l, "=")
	return map[string]string{k: v}
}

func TestPingAndVersion(t *testing.T) {
	c, _ := testEngine(t)
	ctx := testCtx(t)
	v, err := c.Version(ctx)
	if err != nil {
		t.Fatalf("Version: %v", err)
	}
	if v.Version == "" || v.APIVersion == "" {
		t.Errorf("Version = %+v, want Version and ApiVersion set", v)
	}
	t.Logf("engine %s (API %s, podman %v)", v.Version, v.APIVersion, v.IsPodman())
}

func TestUnreachable(t *testing.T) {
	sock := t.TempDir() + "/nobody.sock"
	c := New(sock)
	err := c.Ping(context.Background())
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Ping on %s = %v, want ErrUnreachable", sock, err)
	}
	if !strings.Contains(err.Error(), sock) {
		t.Errorf("error %q does not name the socket %s", err, sock)
	}
}

func TestContainerLifecycle(t *testing.T) {
	c, image := testEngine(t)
	ctx := testCtx(t)
	l := uniqueLabel(t, c)
	pids := int64(64)
	id, err := c.ContainerCreate(ctx, "", ContainerConfig{
		Image:  image,
		Cmd:    []string{"sh", "-c", "echo hello; echo oops >&2; exec sleep 60"},
		User:   "4242:4343",
		Labels: labels(l),
		HostConfig: HostConfig{
			NetworkMode: "none",
			Memory:      64 << 20,
			NanoCPUs:    500_000_000,
			PidsLimit:   &pids,
		},
	})
	if err != nil {
		t.Fatalf("ContainerCreate: %v", err)
	}

	list, err := c.ContainerList(ctx, l)
	if err != nil {
		t.Fatalf("ContainerList: %v", err)
	}
	if len(list) != 1 || list[0].ID != id || list[0].State != "created" {
		t.Fatalf("ContainerList(%s) = %+v, want one created container %s", l, list, id)
	}

	if err := c.ContainerStart(ctx, id); err != nil {
		t.Fatalf("ContainerStart: %v", err)
	}
	info, err := c.ContainerInspect(ctx, id)
	if err != nil {
		t.Fatalf("ContainerInspect: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"State.Running", info.State.Running, true},
		{"Config.User", info.Config.User, "4242:4343"},
		{"HostConfig.Memory", info.HostConfig.Memory, int64(64 << 20)},
		{"HostConfig.NanoCpus", info.HostConfig.NanoCPUs, int64(500_000_000)},
		{"HostConfig.NetworkMode", info.HostConfig.NetworkMode, "none"},
	}
	if info.HostConfig.PidsLimit == nil {
		t.Errorf("HostConfig.PidsLimit = nil, want 64")
	} else {
		checks = append(checks, struct {
			name      string
			got, want any
		}{"HostConfig.PidsLimit", *info.HostConfig.PidsLimit, int64(64)})
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}

	// The shell writes before it sleeps; give it a moment to run.
	var out, errb []byte
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		out, errb, err = c.ContainerLogs(ctx, id, 10)
		if err != nil {
			t.Fatalf("ContainerLogs: %v", err)
		}
		if len(out) > 0 && len(errb) > 0 {
			break
		}
	}
	if string(out) != "hello\n" || string(errb) != "oops\n" {
		t.Errorf("logs = stdout %q, stderr %q; want \"hello\\n\", \"oops\\n\"", out, errb)
	}

	if err := c.ContainerStop(ctx, id, time.Second); err != nil {
		t.Fatalf("ContainerStop: %v", err)
	}
	code, err := c.ContainerWait(ctx, id)
	if err != nil {
		t.Fatalf("ContainerWait: %v", err)
	}
	if code != 137 && code != 143 {
		t.Errorf("exit status after stop = %d, want 137 or 143", code)
	}
	if err := c.ContainerStop(ctx, id, time.Second); err != nil {
		t.Errorf("ContainerStop of a stopped container = %v, want nil", err)
	}
	if err := c.ContainerRemove(ctx, id, false); err != nil {
		t.Fatalf("ContainerRemove: %v", err)
	}
	if _, err := c.ContainerInspect(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Errorf("ContainerInspect after remove = %v, want ErrNotFound", err)
	}
	if list, err := c.ContainerList(ctx, l); err != nil || len(list) != 0 {
		t.Errorf("ContainerList after remove = %+v, %v; want none", list, err)
	}
}

func TestWaitExitStatus(t *testing.T) {
	c, image := testEngine(t)
	ctx := testCtx(t)
	l := uniqueLabel(t, c)
	for _, want := range []int{0, 7} {
		id, err := c.ContainerCreate(ctx, "", ContainerConfig{
			Image:      image,
			Cmd:        []string{"sh", "-c", fmt.Sprintf("exit %d", want)},
			Labels:     labels(l),
			HostConfig: HostConfig{NetworkMode: "none"},
		})
		if err != nil {
			t.Fatalf("ContainerCreate: %v", err)
		}
		if err := c.ContainerStart(ctx, id); err != nil {
			t.Fatalf("ContainerStart: %v", err)
		}
		got, err := c.ContainerWait(ctx, id)
		if err != nil || got != want {
			t.Errorf("ContainerWait = %d, %v; want %d", got, err, want)
		}
		info, err := c.ContainerInspect(ctx, id)
		if err != nil || info.State.Running || info.State.ExitCode != want {
			t.Errorf("inspect after exit: state %+v, %v; want stopped with %d", info.State, err, want)
		}
	}
}

func TestImageMissing(t *testing.T) {
	c, _ := testEngine(t)
	ctx := testCtx(t)
	const missing = "octo-no-such-image:never"
	if _, err := c.ImageInspect(ctx, missing); !errors.Is(err, ErrNotFound) {
		t.Errorf("ImageInspect(%s) = %v, want ErrNotFound", missing, err)
	}
	_, err := c.ContainerCreate(ctx, "", ContainerConfig{Image: missing, Cmd: []string{"true"}})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("ContainerCreate with %s = %v, want ErrNotFound", missing, err)
	}
}

func TestCreateNameConflict(t *testing.T) {
	c, image := testEngine(t)
	ctx := testCtx(t)
	l := uniqueLabel(t, c)
	name := fmt.Sprintf("octo-test-conflict-%d", time.Now().UnixNano())
	cfg := ContainerConfig{Image: image, Cmd: []string{"true"}, Labels: labels(l)}
	if _, err := c.ContainerCreate(ctx, name, cfg); err != nil {
		t.Fatalf("first ContainerCreate: %v", err)
	}
	if _, err := c.ContainerCreate(ctx, name, cfg); !errors.Is(err, ErrConflict) {
		t.Errorf("second ContainerCreate(%s) = %v, want ErrConflict", name, err)
	}
}

func TestImageImportAndRemove(t *testing.T) {
	c, _ := testEngine(t)
	ctx := testCtx(t)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	data := []byte("octo\n")
	tw.WriteHeader(&tar.Header{Name: "etc/octo-test", Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
	tw.Write(data)
	tw.Close()
	tag := fmt.Sprint(time.Now().UnixNano())
	if err := c.ImageImport(ctx, &buf, "octo-test-import", tag); err != nil {
		t.Fatalf("ImageImport: %v", err)
	}
	name := "octo-test-import:" + tag
	img, err := c.ImageInspect(ctx, name)
	if err != nil || img.ID == "" {
		t.Fatalf("ImageInspect(%s) = %+v, %v; want the imported image", name, img, err)
	}
	if err := c.ImageRemove(ctx, name, true); err != nil {
		t.Fatalf("ImageRemove: %v", err)
	}
	if _, err := c.ImageInspect(ctx, name); !errors.Is(err, ErrNotFound) {
		t.Errorf("ImageInspect after remove = %v, want ErrNotFound", err)
	}
}

// Several labels select containers that carry all of them: the runtime
// relies on this to never touch another user's container.
func TestListLabelsAreANDed(t *testing.T) {
	c, image := testEngine(t)
	ctx := testCtx(t)
	l := uniqueLabel(t, c)
	k, v, _ := strings.Cut(l, "=")
	ids := map[string]string{}
	for _, who := range []string{"alice", "bob"} {
		id, err := c.ContainerCreate(ctx, "", ContainerConfig{Image: image, Cmd: []string{"true"},
			Labels: map[string]string{k: v, "octo.test.user": who}})
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		ids[who] = id
	}
	tests := []struct {
		labels []string
		want   []string
	}{
		{[]string{l}, []string{"alice", "bob"}},
		{[]string{l, "octo.test.user=alice"}, []string{"alice"}},
		{[]string{l, "octo.test.user=carol"}, nil},
	}
	for _, tt := range tests {
		list, err := c.ContainerList(ctx, tt.labels...)
		if err != nil {
			t.Fatalf("ContainerList(%q): %v", tt.labels, err)
		}
		got := map[string]bool{}
		for _, ct := range list {
			got[ct.ID] = true
		}
		if len(got) != len(tt.want) {
			t.Errorf("ContainerList(%q) = %d containers, want %v", tt.labels, len(got), tt.want)
		}
		for _, who := range tt.want {
			if !got[ids[who]] {
				t.Errorf("ContainerList(%q) lacks %s's container", tt.labels, who)
			}
		}
	}
}
