package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"octo/internal/agent/agenttest"
	"octo/internal/tokens"
)

// fixture is an agent for the current user, a token for them, a config and
// a TCP listener held as systemd holds it (a file that outlives each octo).
type fixture struct {
	user, secret, cfg, addr string
	lnFile                  *os.File
	logs                    *lockedBuf
}

func newFixture(t *testing.T, server string) *fixture {
	t.Helper()
	me, err := currentUser()
	if err != nil {
		t.Fatal(err)
	}
	sockDir, state := t.TempDir(), t.TempDir()
	if err := os.Symlink(agenttest.Start(t, t.TempDir()), filepath.Join(sockDir, "agent-"+me.Name+".sock")); err != nil {
		t.Fatal(err)
	}
	store, err := tokens.Open(state)
	if err != nil {
		t.Fatal(err)
	}
	secret, _, _ := store.Create(me.Name, "drain test", false)
	store.Close()
	cfg := writeConfig(t, fmt.Sprintf("[server]\nlisten = \"\"\napi_socket = \"\"\nstate_dir = %q\n%s\n[local]\nsocket_dir = %q\n[users]\nallow = [%q]\n",
		state, server, sockDir, me.Name))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lnFile, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	ln.Close() // the socket lives on in lnFile, as in systemd
	t.Cleanup(func() { lnFile.Close() })
	return &fixture{user: me.Name, secret: secret, cfg: cfg, addr: ln.Addr().String(), lnFile: lnFile, logs: &lockedBuf{}}
}

// keepAlive is one client connection reused for request after request, as
// wrk, browsers and SDKs do. Unlike net/http's Transport it never retries:
// every request the server loses is an error here.
type keepAlive struct {
	addr string
	conn net.Conn
	br   *bufio.Reader
}

// do sends one request and reads its response; the connection is closed
// and redialled when the server said Connection: close or anything failed.
// It reports whether the server asked for the connection to be closed.
func (k *keepAlive) do(method, path, secret, body string) (int, []byte, bool, error) {
	if k.conn == nil {
		c, err := net.DialTimeout("tcp", k.addr, 10*time.Second)
		if err != nil {
			return 0, nil, false, fmt.Errorf("connect: %w", err)
		}
		k.conn, k.br = c, bufio.NewReader(c)
	}
	k.conn.SetDeadline(time.Now().Add(20 * time.Second))
	req := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: octo\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		method, path, secret, len(body), body)
	resp, err := k.roundTrip(req)
	if err != nil {
		k.close()
		return 0, nil, false, err
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		k.close()
		return 0, nil, false, fmt.Errorf("read body: %w", err)
	}
	if resp.Close {
		k.close()
	}
	return resp.StatusCode, data, resp.Close, nil
}

func (k *keepAlive) roundTrip(req string) (*http.Response, error) {
	if _, err := io.WriteString(k.conn, req); err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	return resp, nil
}

func (k *keepAlive) close() {
	if k.conn != nil {
		k.conn.Close()
		k.conn = nil
	}
}

// An idle keep-alive connection outlives SIGTERM for the drain window: a
// request sent on it then is answered, with Connection: close, and the
// connection closes after it. The old code closed it at once, so the
// request met a closed connection.
func TestDrainAnswersOneMoreRequest(t *testing.T) {
	f := newFixture(t, `drain_window = "3s"`)
	octo := startServe(t, f.lnFile, f.cfg, f.logs)
	k := &keepAlive{addr: f.addr}
	defer k.close()
	if st, body, _, err := k.do("GET", "/api/v1/status", f.secret, ""); err != nil || st != 200 {
		t.Fatalf("before SIGTERM: %d %s %v\n%s", st, body, err, f.logs)
	}
	conn := k.conn
	octo.Process.Signal(syscall.SIGTERM)
	time.Sleep(300 * time.Millisecond) // well inside the window
	st, body, closed, err := k.do("GET", "/api/v1/status", f.secret, "")
	if err != nil || st != 200 {
		t.Fatalf("one more request on the idle connection after SIGTERM: %d %s %v\n%s", st, body, err, f.logs)
	}
	if !closed {
		t.Errorf("response after SIGTERM lacks Connection: close")
	}
	// The server closes its end: a read sees EOF, not a hang.
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := conn.Read(make([]byte, 1)); err != io.EOF && !strings.Contains(fmt.Sprint(err), "closed") {
		t.Errorf("after Connection: close the server's end read %d, %v; want EOF", n, err)
	}
	done := make(chan error, 1)
	go func() { done <- octo.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("octo exited with %v\n%s", err, f.logs)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("octo did not exit after its last connection closed\n%s", f.logs)
	}
}

// With no open connection left, octo exits without waiting for the
// window; with an idle one it waits the window, then closes it.
func TestDrainWindowBoundsIdleConnections(t *testing.T) {
	f := newFixture(t, `drain_window = "1500ms"`)
	octo := startServe(t, f.lnFile, f.cfg, f.logs)
	k := &keepAlive{addr: f.addr}
	defer k.close()
	if st, _, _, err := k.do("GET", "/api/v1/status", f.secret, ""); err != nil || st != 200 {
		t.Fatalf("status: %d %v\n%s", st, err, f.logs)
	}
	start := time.Now()
	octo.Process.Signal(syscall.SIGTERM)
	k.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := k.conn.Read(make([]byte, 1))
	closedAfter := time.Since(start)
	if err != io.EOF {
		t.Errorf("idle connection read %v, want EOF at the end of the window", err)
	}
	if closedAfter < 1400*time.Millisecond || closedAfter > 5*time.Second {
		t.Errorf("idle connection closed %v after SIGTERM, want at the end of the 1.5s window", closedAfter)
	}
	if err := octo.Wait(); err != nil {
		t.Errorf("octo exited with %v\n%s", err, f.logs)
	}

	// Nothing open: the next instance stops at once.
	octo = startServe(t, f.lnFile, f.cfg, f.logs)
	k.close()
	if st, _, _, err := k.do("GET", "/api/v1/status", f.secret, ""); err != nil || st != 200 {
		t.Fatalf("status on the second instance: %d %v\n%s", st, err, f.logs)
	}
	k.close()
	time.Sleep(100 * time.Millisecond) // the server sees the close
	start = time.Now()
	octo.Process.Signal(syscall.SIGTERM)
	octo.Wait()
	if d := time.Since(start); d > time.Second {
		t.Errorf("with no open connection octo took %v to stop, want well under the 1.5s window", d)
	}
}

// A follow stream open at SIGTERM is not cut: it ends at the end of the
// drain window with a clean end of stream whose trailer says where to
// resume, and the next instance resumes it from there.
func TestDrainEndsStreamsCleanly(t *testing.T) {
	f := newFixture(t, `drain_window = "1s"`)
	octo := startServe(t, f.lnFile, f.cfg, f.logs)
	hc := &http.Client{Timeout: 20 * time.Second}
	call := func(method, path, body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+f.addr+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+f.secret)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", method, path, err, f.logs)
		}
		return resp
	}
	resp := call("POST", "/api/v1/sessions", `{"command":["sh","-c","echo one; sleep 3; echo two"]}`)
	var s struct{ ID string }
	json.NewDecoder(resp.Body).Decode(&s)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("start session: %d\n%s", resp.StatusCode, f.logs)
	}
	stream := call("GET", "/api/v1/sessions/"+s.ID+"/output?follow=1", "")
	defer stream.Body.Close()
	first := make([]byte, 4)
	if _, err := io.ReadFull(stream.Body, first); err != nil || string(first) != "one\n" {
		t.Fatalf("first chunk %q %v", first, err)
	}
	start := time.Now()
	octo.Process.Signal(syscall.SIGTERM)
	rest, err := io.ReadAll(stream.Body)
	ended := time.Since(start)
	if err != nil {
		t.Fatalf("stream across SIGTERM ended with %v, want a clean end", err)
	}
	if ended < 900*time.Millisecond || ended > 2500*time.Millisecond {
		t.Errorf("stream ended %v after SIGTERM, want at the end of the 1s window", ended)
	}
	next := stream.Trailer.Get("Octo-Next-Offset")
	if string(rest) != "" || next != "4" || stream.Trailer.Get("Octo-Output-Done") != "false" {
		t.Fatalf("stream ended with %q, trailer %v; want nothing more, next offset 4, not done", rest, stream.Trailer)
	}
	octo.Wait()
	startServe(t, f.lnFile, f.cfg, f.logs)
	resumed := call("GET", "/api/v1/sessions/"+s.ID+"/output?follow=1&offset="+next, "")
	data, err := io.ReadAll(resumed.Body)
	resumed.Body.Close()
	if err != nil || string(data) != "two\n" || resumed.Trailer.Get("Octo-Output-Done") != "true" {
		t.Errorf("resumed stream %q %v, trailer %v; want \"two\\n\" to the end", data, err, resumed.Trailer)
	}
}

// Keep-alive clients sending GETs and POSTs (start a session) while octo
// restarts three times lose nothing: no connection error, every response
// 2xx, and every POST answered 201 made exactly one session.
func TestRestartKeepAliveLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping in -short mode: three restarts under load")
	}
	f := newFixture(t, `drain_window = "1s"`)
	octo := startServe(t, f.lnFile, f.cfg, f.logs)
	var gets, posts, failed atomic.Int64
	var firstErr atomic.Value
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := &keepAlive{addr: f.addr}
			defer k.close()
			for i := 0; ctx.Err() == nil; i++ {
				method, path, body, want := "GET", "/api/v1/status", "", 200
				if (w+i)%4 == 0 {
					method, path, body, want = "POST", "/api/v1/sessions", `{"command":["true"]}`, 201
				}
				st, data, _, err := k.do(method, path, f.secret, body)
				switch {
				case err != nil || st != want:
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%s %s: %d %s %v", method, path, st, data, err))
				case method == "POST":
					posts.Add(1)
				default:
					gets.Add(1)
				}
			}
		}()
	}
	for range 3 {
		time.Sleep(400 * time.Millisecond)
		octo.Process.Signal(syscall.SIGTERM)
		if err := octo.Wait(); err != nil {
			t.Errorf("octo exited with %v", err)
		}
		octo = startServe(t, f.lnFile, f.cfg, f.logs)
	}
	time.Sleep(400 * time.Millisecond)
	stop()
	wg.Wait()
	t.Logf("%d GETs and %d POSTs across 3 restarts, %d failed", gets.Load(), posts.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Errorf("%d requests failed across restarts, first: %v\n%s", failed.Load(), firstErr.Load(), f.logs)
	}
	if gets.Load() < 100 || posts.Load() < 20 {
		t.Errorf("too few requests to mean anything: %d GETs, %d POSTs", gets.Load(), posts.Load())
	}
	k := &keepAlive{addr: f.addr}
	defer k.close()
	st, data, _, err := k.do("GET", "/api/v1/sessions", f.secret, "")
	if err != nil || st != 200 {
		t.Fatalf("list sessions: %d %v", st, err)
	}
	var list struct{ Sessions []json.RawMessage }
	json.Unmarshal(data, &list)
	if int64(len(list.Sessions)) != posts.Load() {
		t.Errorf("the agent has %d sessions, but %d POSTs were answered 201: a POST was lost or doubled", len(list.Sessions), posts.Load())
	}
}
