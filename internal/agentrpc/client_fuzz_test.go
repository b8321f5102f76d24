package agentrpc_test

import (
	"bytes"
	"context"
	"net"
	"net/rpc"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"octo/internal/agentrpc"
)

// octo trusts an agent with nothing but its user's own data: every reply is
// untrusted input. Whatever bytes an agent sends after a call, the client
// must not panic, must not allocate without bound (replies are capped at
// MaxReplySize, and frames grow only as their bytes arrive) and must return
// by the call's deadline, with an error or a reply.
func FuzzClientReplies(f *testing.F) {
	for _, seed := range agentReplies(f) {
		f.Add(seed)
		f.Add(seed[:len(seed)/2]) // cut short
	}
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}) // an absurd length
	f.Add([]byte{0x80, 0x80, 0x80, 0x80, 0x04})                               // 1 GiB announced, none sent
	f.Fuzz(func(t *testing.T, reply []byte) {
		cli, agent := socketPair(t)
		done := make(chan struct{})
		defer close(done)
		hold := len(reply) > 0 && reply[0] == 0xff
		go func() {
			// Read the preamble and the request, answer with the fuzzed
			// bytes, then hang up, or (inputs starting 0xff) hold the
			// connection open: a reply that never completes must end at
			// the deadline, not hang.
			agent.Read(make([]byte, 4096))
			agent.Write(reply)
			if hold {
				<-done
			}
			agent.Close()
		}()
		c := agentrpc.NewClient(cli)
		defer c.Close()
		const deadline = 200 * time.Millisecond
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		start := time.Now()
		c.Info(ctx)
		if took := time.Since(start); took > deadline+2*time.Second {
			t.Fatalf("Info with a %v deadline returned after %v", deadline, took)
		}
	})
}

// agentReplies are real replies, as an agent's codec writes them: Info, an
// error, and a session list, each answering the client's first call.
func agentReplies(f *testing.F) [][]byte {
	f.Helper()
	var out [][]byte
	for _, svc := range []any{fakeAgent{}, fakeAgent{fail: true}} {
		srv := rpc.NewServer()
		if err := srv.RegisterName("Agent", svc); err != nil {
			f.Fatal(err)
		}
		cli, agent := socketPair(f)
		rec := &recorder{Conn: agent}
		go srv.ServeCodec(agentrpc.NewServerCodec(rec))
		c := agentrpc.NewClient(cli)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c.Info(ctx)
		cancel()
		c.Close()
		b := rec.bytes()
		if len(b) == 0 {
			f.Fatal("the agent wrote no reply to record")
		}
		out = append(out, b)
	}
	return out
}

type fakeAgent struct{ fail bool }

func (a fakeAgent) Info(_ *agentrpc.Empty, reply *agentrpc.Info) error {
	if a.fail {
		return agentrpc.Errorf(agentrpc.CodeNotFound, "no such thing")
	}
	*reply = agentrpc.Info{User: "alice", UID: 1001, Home: "/home/alice", Version: "v", PID: 42, StartTime: time.Unix(1, 2)}
	return nil
}

// recorder keeps what the agent writes.
type recorder struct {
	net.Conn
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	r.buf.Write(p)
	r.mu.Unlock()
	return r.Conn.Write(p)
}

func (r *recorder) bytes() []byte {
	time.Sleep(10 * time.Millisecond) // the reply's flush, if it raced Close
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.buf.Bytes())
}

// socketPair returns the two ends of a connected Unix stream socket.
func socketPair(tb testing.TB) (net.Conn, net.Conn) {
	tb.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			tb.Fatal(err)
		}
		return c
	}
	return conn(fds[0]), conn(fds[1])
}
