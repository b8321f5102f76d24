package agentrpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/rpc"
	"sync"
	"time"

	"octo/internal/agentrpc/wire"
)

// ErrConnLost matches errors caused by the connection to the agent, not by
// the call: the agent exited (idle exit is normal) or the socket closed.
// A caller may reconnect and, for calls safe to repeat, retry once.
var ErrConnLost = errors.New("agent connection lost")

type connError struct{ err error }

func (e *connError) Error() string        { return "agent connection lost: " + e.err.Error() }
func (e *connError) Unwrap() error        { return e.err }
func (e *connError) Is(target error) bool { return target == ErrConnLost }

// Client is a typed client for one connection to an agent. It is safe for
// concurrent use; calls are multiplexed over the connection.
type Client struct {
	rc      *rpc.Client
	codec   *wire.ClientCodec
	observe func(method string, err error)
}

// Dial connects to the agent listening at address ("unix" network for a socket path).
func Dial(ctx context.Context, network, address string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return NewClient(conn), nil
}

// NewClient returns a client using conn, which it owns from then on.
func NewClient(conn net.Conn) *Client {
	codec := wire.NewClientCodec(conn, MaxReplySize)
	return &Client{rc: rpc.NewClientWithCodec(codec), codec: codec}
}

// Observe has fn called after every call with its method and its error (nil
// when it succeeded), for metrics. Set it before the client's first call.
func (c *Client) Observe(fn func(method string, err error)) { c.observe = fn }

// Close closes the connection. Calls in flight fail with ErrConnLost.
func (c *Client) Close() error { return c.rc.Close() }

// Call invokes method with args and fills reply. Protocol errors come back as
// *Error (match with errors.Is against ErrNotFound and the rest), transport
// errors match ErrConnLost, a reply over MaxReplySize ErrBadReply. If ctx
// ends first Call returns ctx.Err() at once, and net/rpc may still decode the
// late reply into reply: the caller must not read reply after an error (the
// typed methods return zero values then).
func (c *Client) Call(ctx context.Context, method string, args, reply any) error {
	err := c.call(ctx, method, args, reply)
	if c.observe != nil {
		c.observe(method, err)
	}
	return err
}

func (c *Client) call(ctx context.Context, method string, args, reply any) error {
	if err := c.codec.ReplyErr(); err != nil {
		// A refused reply closed the connection: later calls find it lost,
		// whether or not net/rpc's reader has noticed yet.
		return &connError{err}
	}
	done := donePool.Get().(chan *rpc.Call)
	call := c.rc.Go(method, args, reply, done)
	// A context from WithTimeout is waited on through its parent and a
	// pooled timer; any other through its Done.
	var ctxDone <-chan struct{}
	var expired <-chan time.Time
	if tc, t := waitTimer(ctx); t != nil {
		defer tc.disarm(t)
		ctxDone, expired = tc.Context.Done(), t.C
	} else {
		ctxDone = ctx.Done()
	}
	select {
	case <-call.Done:
		donePool.Put(done) // empty again, and net/rpc no longer holds it
		if call.Error != nil && !errors.Is(call.Error, rpc.ErrShutdown) {
			if err := c.codec.ReplyErr(); err != nil {
				return err
			}
		}
		return mapErr(call.Error)
	case <-ctxDone:
		closeLate(call) // done is left to the late reply
		return ctx.Err()
	case <-expired:
		closeLate(call)
		if err := ctx.Err(); err != nil {
			return err // canceled, or the deadline passed
		}
		return context.DeadlineExceeded
	}
}

// closeLate closes the descriptor a call given up on may still receive:
// nobody reads its reply.
func closeLate(call *rpc.Call) {
	if _, ok := call.Reply.(wire.FileBody); !ok {
		return
	}
	go func() {
		<-call.Done
		if f := call.Reply.(wire.FileBody).PassedFile(); f != nil {
			f.Close()
		}
	}()
}

// donePool recycles the completion channels of calls that completed.
var donePool = sync.Pool{New: func() any { return make(chan *rpc.Call, 1) }}

func mapErr(err error) error {
	if err == nil {
		return nil
	}
	var se rpc.ServerError
	if errors.As(err, &se) {
		return Decode(err)
	}
	if errors.Is(err, rpc.ErrShutdown) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &connError{err}
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return &connError{err}
	}
	return fmt.Errorf("agent call: %w", err)
}

// Info returns the agent's description of itself.
func (c *Client) Info(ctx context.Context) (Info, error) {
	var r Info
	if err := c.Call(ctx, MethodInfo, &Empty{}, &r); err != nil {
		return Info{}, err
	}
	return r, nil
}

// Start starts a session.
func (c *Client) Start(ctx context.Context, req StartRequest) (Session, error) {
	var r Session
	if err := c.Call(ctx, MethodSessionStart, &req, &r); err != nil {
		return Session{}, err
	}
	return r, nil
}

// Sessions lists all sessions the agent knows, oldest first.
func (c *Client) Sessions(ctx context.Context) ([]Session, error) {
	var r SessionList
	if err := c.Call(ctx, MethodSessionList, &Empty{}, &r); err != nil {
		return nil, err
	}
	return r.Sessions, nil
}

// Session returns one session's record.
func (c *Client) Session(ctx context.Context, id string) (Session, error) {
	var r Session
	if err := c.Call(ctx, MethodSessionGet, &SessionRef{ID: id}, &r); err != nil {
		return Session{}, err
	}
	return r, nil
}

// Stop stops a session and returns its record once it has ended.
func (c *Client) Stop(ctx context.Context, req StopRequest) (Session, error) {
	var r Session
	if err := c.Call(ctx, MethodSessionStop, &req, &r); err != nil {
		return Session{}, err
	}
	return r, nil
}

// Signal sends a signal to a session's process group.
func (c *Client) Signal(ctx context.Context, id, signal string) error {
	return c.Call(ctx, MethodSessionSignal, &SignalRequest{ID: id, Signal: signal}, &Empty{})
}

// Resize changes a tty session's terminal size.
func (c *Client) Resize(ctx context.Context, id string, rows, cols uint16) error {
	return c.Call(ctx, MethodSessionResize, &ResizeRequest{ID: id, Rows: rows, Cols: cols}, &Empty{})
}

// WriteInput writes data to a session's standard input.
func (c *Client) WriteInput(ctx context.Context, id string, data []byte) error {
	return c.Call(ctx, MethodSessionInput, &InputRequest{ID: id, Data: data}, &Empty{})
}

// CloseInput closes a session's standard input (end of file).
func (c *Client) CloseInput(ctx context.Context, id string) error {
	return c.Call(ctx, MethodSessionClose, &SessionRef{ID: id}, &Empty{})
}

// ReadOutput reads a chunk of a session's output.
func (c *Client) ReadOutput(ctx context.Context, req OutputRequest) (Output, error) {
	var r Output
	if err := c.Call(ctx, MethodSessionOutput, &req, &r); err != nil {
		return Output{}, err
	}
	return r, nil
}

// Stat describes a path in the workspace, without following a final symlink.
func (c *Client) Stat(ctx context.Context, path string) (FileInfo, error) {
	var r FileInfo
	if err := c.Call(ctx, MethodFileStat, &PathRequest{Path: path}, &r); err != nil {
		return FileInfo{}, err
	}
	return r, nil
}

// List lists a directory in the workspace.
func (c *Client) List(ctx context.Context, path string) ([]FileInfo, error) {
	var r DirList
	if err := c.Call(ctx, MethodFileList, &PathRequest{Path: path}, &r); err != nil {
		return nil, err
	}
	return r.Entries, nil
}

// Read reads a chunk of a file in the workspace.
func (c *Client) Read(ctx context.Context, req ReadRequest) (ReadReply, error) {
	var r ReadReply
	if err := c.Call(ctx, MethodFileRead, &req, &r); err != nil {
		return ReadReply{}, err
	}
	return r, nil
}

// Write replaces a file in the workspace atomically.
func (c *Client) Write(ctx context.Context, req WriteRequest) (FileInfo, error) {
	var r FileInfo
	if err := c.Call(ctx, MethodFileWrite, &req, &r); err != nil {
		return FileInfo{}, err
	}
	return r, nil
}

// Mkdir creates a directory in the workspace.
func (c *Client) Mkdir(ctx context.Context, req MkdirRequest) (FileInfo, error) {
	var r FileInfo
	if err := c.Call(ctx, MethodFileMkdir, &req, &r); err != nil {
		return FileInfo{}, err
	}
	return r, nil
}

// Remove removes a path in the workspace.
func (c *Client) Remove(ctx context.Context, req RemoveRequest) error {
	return c.Call(ctx, MethodFileRemove, &req, &Empty{})
}

// Rename renames a path within the workspace.
func (c *Client) Rename(ctx context.Context, req RenameRequest) (FileInfo, error) {
	var r FileInfo
	if err := c.Call(ctx, MethodFileRename, &req, &r); err != nil {
		return FileInfo{}, err
	}
	return r, nil
}

// PassesFDs reports whether this connection carries descriptors: Open and
// Create then pass one, and the bytes need no calls of their own.
func (c *Client) PassesFDs() bool { return c.codec.PassesFDs() }

// Open opens a file for reading, asking for a descriptor when the
// connection can carry one. The caller closes the reply's File, if any.
func (c *Client) Open(ctx context.Context, req OpenRequest) (OpenReply, error) {
	req.FD = req.FD && c.PassesFDs()
	var r OpenReply
	if err := c.Call(ctx, MethodFileOpen, &req, &r); err != nil {
		return OpenReply{}, err // a descriptor arriving late is closed (closeLate)
	}
	if err := checkPassed(r.File, req.FD, false); err != nil {
		return OpenReply{}, err
	}
	return r, nil
}

// Create starts an upload, asking for a descriptor of its temporary file
// when the connection can carry one. The caller closes the Upload's File,
// if any, before Commit, and calls Commit or Abort.
func (c *Client) Create(ctx context.Context, req CreateRequest) (Upload, error) {
	req.FD = req.FD && c.PassesFDs()
	var r Upload
	if err := c.Call(ctx, MethodFileCreate, &req, &r); err != nil {
		return Upload{}, err // a descriptor arriving late is closed (closeLate)
	}
	if err := checkPassed(r.File, req.FD, true); err != nil {
		return Upload{}, err
	}
	return r, nil
}

// WriteAt writes a chunk of an upload.
func (c *Client) WriteAt(ctx context.Context, req ChunkRequest) error {
	return c.Call(ctx, MethodFileWriteAt, &req, &Empty{})
}

// Commit finishes an upload.
func (c *Client) Commit(ctx context.Context, req CommitRequest) (CommitReply, error) {
	var r CommitReply
	if err := c.Call(ctx, MethodFileCommit, &req, &r); err != nil {
		return CommitReply{}, err
	}
	return r, nil
}

// Abort removes an upload's temporary file.
func (c *Client) Abort(ctx context.Context, id string) error {
	return c.Call(ctx, MethodFileAbort, &UploadRef{ID: id}, &Empty{})
}
