package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"octo/internal/client"
)

// octo run passes the session's output and exit status on, over the Unix
// socket and over TCP with a token.
func TestCLIRunExitStatus(t *testing.T) {
	e := newCLIEnv(t)
	for _, tc := range []struct {
		name string
		tcp  bool
	}{{"unix", false}, {"tcp", true}} {
		cmd := e.octo("run", "--", "sh", "-c", "echo hi; echo err >&2; exit 7")
		if tc.tcp {
			e.overTCP(cmd)
		}
		out, errOut, st := result(t, cmd)
		if out != "hi\nerr\n" || st != 7 {
			t.Errorf("%s: octo run printed %q (stderr %q) and exited %d; want \"hi\\nerr\\n\" and 7", tc.name, out, errOut, st)
		}
	}
}

// A session ended by a signal makes octo exit 128+N: by itself, and when
// octo forwards the TERM it got.
func TestCLIRunSignal(t *testing.T) {
	e := newCLIEnv(t)
	if _, _, st := result(t, e.octo("run", "--", "sh", "-c", "kill -TERM $$")); st != 143 {
		t.Errorf("session killed by TERM: octo exited %d, want 143", st)
	}
	cmd := e.octo("run", "--", "sh", "-c", "echo up; exec sleep 100")
	var out lockedBuf
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; !strings.Contains(out.String(), "up"); i++ {
		if i > 1000 {
			t.Fatal("session never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if st := waitExit(t, cmd); st != 143 {
		t.Errorf("octo run got TERM: exited %d, want 143 (the session killed by the forwarded TERM)", st)
	}
}

// Without -i the session's stdin is closed; with -i ours is forwarded,
// byte for byte, and its end closes the session's.
func TestCLIRunStdin(t *testing.T) {
	e := newCLIEnv(t)
	if out, _, st := result(t, e.octo("run", "--", "cat")); out != "" || st != 0 {
		t.Errorf("octo run -- cat without -i: %q, exit %d; want nothing and 0 (stdin closed)", out, st)
	}
	in := make([]byte, 3<<20)
	rand.Read(in)
	cmd := e.octo("run", "-i", "--", "cat")
	cmd.Stdin = bytes.NewReader(in)
	out, errOut, st := result(t, cmd)
	if out != string(in) || st != 0 {
		t.Errorf("octo run -i -- cat of 3 MiB: got %d bytes back (equal: %v), exit %d, stderr %q", len(out), out == string(in), st, errOut)
	}
}

// octo run -t: the local terminal's size is the session's, typed input
// reaches it, a resize propagates, and the exit status comes back.
func TestCLIRunTTY(t *testing.T) {
	e := newCLIEnv(t)
	cmd := e.octo("run", "-t", "--", "sh", "-c", `stty size; read x; echo "got $x"; while read y; do stty size; [ "$y" = q ] && exit 5; done`)
	p := startInPTY(t, cmd, 30, 100)
	p.waitFor("30 100")
	p.write("hello\r")
	p.waitFor("got hello")
	p.resize(40, 120)
	for i := 0; !strings.Contains(p.output(), "40 120"); i++ {
		if i > 100 {
			t.Fatalf("the resize never reached the session:\n%q", p.output())
		}
		p.write("\r")
		time.Sleep(50 * time.Millisecond)
	}
	p.write("q\r")
	if st := waitExit(t, cmd); st != 5 {
		t.Errorf("octo run -t exited %d, want 5\n%q", st, p.output())
	}
	if strings.Contains(p.output(), "^@") || strings.ContainsRune(p.output(), 0) {
		t.Errorf("the session saw bytes nobody typed:\n%q", p.output())
	}
}

// Detaching (Ctrl-P Ctrl-Q) leaves the session running; attaching again
// from the offset octo printed shows what it printed in between.
func TestCLIDetachAttach(t *testing.T) {
	e := newCLIEnv(t)
	cmd := e.octo("run", "-t", "--", "sh", "-c", `echo start; read x; echo "between $x"; read y; echo "end $y"; exit 4`)
	p := startInPTY(t, cmd, 24, 80)
	p.waitFor("start")
	p.write("\x10\x11")
	if st := waitExit(t, cmd); st != 0 {
		t.Fatalf("detach: octo exited %d, want 0\n%q", st, p.output())
	}
	p.waitFor("resumes there") // the terminal may not have passed it on yet
	m := regexp.MustCompile(`detached from (\w+) at output offset (\d+)`).FindStringSubmatch(p.output())
	if m == nil {
		t.Fatalf("detach printed no offset:\n%q", p.output())
	}
	ctx := context.Background()
	if s, err := e.c.Session(ctx, m[1]); err != nil || !s.Running() {
		t.Fatalf("after detach the session is %+v, %v; want running", s, err)
	}
	if err := e.c.Input(ctx, m[1], strings.NewReader("meanwhile\r"), false); err != nil {
		t.Fatal(err)
	}
	cmd = e.octo("attach", "--offset", m[2], m[1])
	p = startInPTY(t, cmd, 24, 80)
	p.waitFor("between meanwhile")
	p.write("bye\r")
	p.waitFor("end bye")
	if st := waitExit(t, cmd); st != 4 {
		t.Errorf("octo attach exited %d, want the session's 4\n%q", st, p.output())
	}
}

// octo logs of a 20 MB output is byte-exact, read at once or followed.
func TestCLILogsLarge(t *testing.T) {
	e := newCLIEnv(t)
	data := make([]byte, 20_000_000)
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(e.ws, "big.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	id, _, st := result(t, e.octo("run", "-d", "--", "sh", "-c", "sleep 0.2; cat big.bin"))
	id = strings.TrimSpace(id)
	if st != 0 || id == "" {
		t.Fatalf("octo run -d: %q, exit %d", id, st)
	}
	out, errOut, st := result(t, e.octo("logs", "-f", id))
	if st != 0 || out != string(data) {
		t.Errorf("octo logs -f: %d bytes (equal %v), exit %d, stderr %q", len(out), out == string(data), st, errOut)
	}
	out, errOut, st = result(t, e.octo("logs", id))
	if st != 0 || out != string(data) {
		t.Errorf("octo logs of the ended session: %d bytes (equal %v), exit %d, stderr %q", len(out), out == string(data), st, errOut)
	}
}

// octo cp moves 20 MiB into the workspace and back, byte-exact.
func TestCLICopy(t *testing.T) {
	e := newCLIEnv(t)
	data := make([]byte, 20<<20)
	rand.Read(data)
	dir := t.TempDir()
	src := filepath.Join(dir, "data.bin")
	os.WriteFile(src, data, 0o644)
	if _, errOut, st := result(t, e.octo("cp", "--parents", src, ":in/")); st != 0 {
		t.Fatalf("octo cp up: exit %d: %s", st, errOut)
	}
	if got, _ := os.ReadFile(filepath.Join(e.ws, "in", "data.bin")); !bytes.Equal(got, data) {
		t.Errorf("uploaded file: %d bytes, equal %v", len(got), bytes.Equal(got, data))
	}
	if _, errOut, st := result(t, e.octo("cp", ":in/data.bin", filepath.Join(dir, "back.bin"))); st != 0 {
		t.Fatalf("octo cp down: exit %d: %s", st, errOut)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "back.bin")); !bytes.Equal(got, data) {
		t.Errorf("downloaded file: %d bytes, equal %v", len(got), bytes.Equal(got, data))
	}
	out, _, st := result(t, e.octo("ls", "in"))
	if st != 0 || !strings.Contains(out, "20971520") || !strings.Contains(out, "data.bin") {
		t.Errorf("octo ls in: %q, exit %d", out, st)
	}
}

// API errors print the API's message and exit 1; usage errors exit 2.
func TestCLIErrors(t *testing.T) {
	e := newCLIEnv(t)
	for _, tc := range []struct {
		args       []string
		status     int
		wantStderr string
	}{
		{[]string{"logs", "nosuch"}, 1, "not found"},
		{[]string{"stop", "nosuch"}, 1, "not found"},
		{[]string{"cp", ":missing.txt", "x"}, 1, "no such file"},
		{[]string{"run"}, 2, "run needs a command"},
		{[]string{"cp", "a", "b"}, 2, "exactly one of SRC and DST"},
		{[]string{"signal", "x"}, 2, "signal takes"},
		{[]string{"ps", "--bogus"}, 2, "bogus"},
	} {
		_, errOut, st := result(t, e.octo(tc.args...))
		if st != tc.status || !strings.Contains(errOut, tc.wantStderr) {
			t.Errorf("octo %v: exit %d, stderr %q; want exit %d and %q", tc.args, st, errOut, tc.status, tc.wantStderr)
		}
	}
}

// octo dev prints the export line that points the client commands at it.
func TestCLIWithDev(t *testing.T) {
	ws := t.TempDir()
	out := &lockedBuf{}
	dev := exec.Command(os.Args[0], "--", "dev", "--listen", "127.0.0.1:0", "--workspace", ws)
	dev.Env = append(os.Environ(), "OCTO_TEST_MAIN=1")
	dev.Stdout, dev.Stderr = out, out
	if err := dev.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { dev.Process.Kill(); dev.Wait() }()
	var m []string
	for i := 0; i < 500 && m == nil; i++ {
		m = regexp.MustCompile(`export OCTO_SOCKET=(\S+)`).FindStringSubmatch(out.String())
		time.Sleep(10 * time.Millisecond)
	}
	if m == nil {
		t.Fatalf("octo dev printed no export OCTO_SOCKET line:\n%s", out)
	}
	cmd := exec.Command(os.Args[0], "--", "run", "--", "sh", "-c", "pwd; exit 3")
	cmd.Env = append(os.Environ(), "OCTO_TEST_MAIN=1", "OCTO_SOCKET="+m[1], "OCTO_URL=")
	if got, errOut, st := result(t, cmd); strings.TrimSpace(got) != ws || st != 3 {
		t.Errorf("octo run against octo dev: %q (stderr %q), exit %d; want the workspace %s and 3", got, errOut, st, ws)
	}
}

// ps lists running sessions (-a also ended ones, --json for scripts), stop
// ends one, signal sends one, and rm refuses a running session.
func TestCLIPsStopSignalRm(t *testing.T) {
	e := newCLIEnv(t)
	run := func(args ...string) string {
		t.Helper()
		out, errOut, st := result(t, e.octo(args...))
		if st != 0 {
			t.Fatalf("octo %v: exit %d: %s", args, st, errOut)
		}
		return strings.TrimSpace(out)
	}
	a := run("run", "-d", "--name", "sleeper", "--", "sleep", "100")
	b := run("run", "-d", "--", "sh", "-c", "trap 'exit 9' HUP; while :; do sleep 0.05; done")
	done := run("run", "-d", "--", "true")
	e.c.Wait(context.Background(), done)
	if out := run("ps"); !strings.Contains(out, a) || !strings.Contains(out, "sleeper") || !strings.Contains(out, b) || strings.Contains(out, done) {
		t.Errorf("octo ps:\n%s\nwant %s and %s, not the ended %s", out, a, b, done)
	}
	var list []struct{ ID, State string }
	if err := json.Unmarshal([]byte(run("ps", "-a", "--json")), &list); err != nil || len(list) != 3 {
		t.Errorf("octo ps -a --json: %+v, %v; want 3 sessions", list, err)
	}
	if _, errOut, st := result(t, e.octo("rm", a)); st != 1 || !strings.Contains(errOut, "is running") {
		t.Errorf("octo rm of a running session: exit %d, %q; want a refusal", st, errOut)
	}
	run("signal", b, "HUP")
	if s, _ := e.c.Wait(context.Background(), b); s.ExitStatus() != 9 {
		t.Errorf("after octo signal HUP: %+v, want exit 9 from the trap", s)
	}
	if out := run("stop", "--grace", "1s", a); !strings.Contains(out, "killed (TERM)") {
		t.Errorf("octo stop: %q, want killed (TERM)", out)
	}
}

// octo rm removes an ended session (and with -f a running one): it is gone.
func TestCLIRm(t *testing.T) {
	e := newCLIEnv(t)
	ctx := context.Background()
	ended, _, _ := result(t, e.octo("run", "-d", "--", "true"))
	ended = strings.TrimSpace(ended)
	e.c.Wait(ctx, ended)
	_, errOut, st := result(t, e.octo("rm", ended))
	if strings.Contains(errOut, "this server does not remove sessions") {
		// The remove route (DELETE ?remove=1) comes with issue 12's session
		// work; until it is merged the client can only say so.
		t.Skip("the server has no remove route yet: " + errOut)
	}
	if st != 0 {
		t.Fatalf("octo rm of an ended session: exit %d: %s", st, errOut)
	}
	running, _, _ := result(t, e.octo("run", "-d", "--", "sleep", "100"))
	running = strings.TrimSpace(running)
	if _, errOut, st := result(t, e.octo("rm", "-f", running)); st != 0 {
		t.Fatalf("octo rm -f of a running session: exit %d: %s", st, errOut)
	}
	for _, id := range []string{ended, running} {
		if _, err := e.c.Session(ctx, id); client.ErrorCode(err) != "not_found" {
			t.Errorf("after octo rm, session %s: %v; want not_found", id, err)
		}
	}
}

// --cwd, --env and --name reach the session.
func TestCLIRunOptions(t *testing.T) {
	e := newCLIEnv(t)
	os.Mkdir(filepath.Join(e.ws, "sub"), 0o755)
	out, errOut, st := result(t, e.octo("run", "--cwd", "sub", "--env", "A=b=c", "--name", "opts", "--", "sh", "-c", `pwd; echo "$A"`))
	if want := filepath.Join(e.ws, "sub") + "\nb=c\n"; out != want || st != 0 {
		t.Errorf("octo run --cwd sub --env A=b=c: %q (stderr %q), exit %d; want %q", out, errOut, st, want)
	}
	list, err := e.c.Sessions(context.Background())
	if err != nil || len(list) != 1 || list[0].Name != "opts" {
		t.Errorf("sessions %+v, %v; want one named opts", list, err)
	}
	if _, errOut, st := result(t, e.octo("run", "--env", "novalue", "--", "true")); st != 2 || !strings.Contains(errOut, "KEY=VALUE") {
		t.Errorf("--env without =: exit %d, %q; want a usage error", st, errOut)
	}
}

// A session that reads its stdin only after the agent's 5 s input timeout
// still gets every byte: the attachment waits, as a pipe would.
func TestCLIRunStdinLateReader(t *testing.T) {
	e := newCLIEnv(t)
	in := make([]byte, 1<<20)
	rand.Read(in)
	cmd := e.octo("run", "-i", "--", "sh", "-c", "sleep 6; cat")
	cmd.Stdin = bytes.NewReader(in)
	out, errOut, st := result(t, cmd)
	if out != string(in) || st != 0 {
		t.Errorf("a late reader got %d of %d bytes (equal %v), exit %d, stderr %q", len(out), len(in), out == string(in), st, errOut)
	}
}

// octo cp draws a progress bar when stderr is a terminal, and only then.
func TestCLICopyProgress(t *testing.T) {
	e := newCLIEnv(t)
	src := filepath.Join(t.TempDir(), "p.bin")
	os.WriteFile(src, make([]byte, 3<<20), 0o644)
	cmd := e.octo("cp", src, ":p.bin")
	p := startInPTY(t, cmd, 24, 80)
	if st := waitExit(t, cmd); st != 0 {
		t.Fatalf("octo cp in a terminal: exit %d\n%q", st, p.output())
	}
	p.waitFor("100%")
	if !strings.Contains(p.output(), ":p.bin [") || !strings.Contains(p.output(), "3.0 MiB") {
		t.Errorf("progress bar %q, want the name, a bar and the size", p.output())
	}
	if _, errOut, st := result(t, e.octo("cp", ":p.bin", filepath.Join(t.TempDir(), "q.bin"))); st != 0 || errOut != "" {
		t.Errorf("octo cp with stderr not a terminal: exit %d, stderr %q; want nothing", st, errOut)
	}
}
