// Package agentrpc is the octo agent's net/rpc protocol: request and reply
// types, error codes, limits, the codecs of its wire format and a typed
// client.
package agentrpc

import (
	"os"
	"time"
)

// Method names, as registered with net/rpc. Each takes a pointer to the
// request type named in its comment and fills in the reply type.
const (
	MethodInfo = "Agent.Info" // Empty -> Info

	MethodSessionStart  = "Session.Start"      // StartRequest -> Session
	MethodSessionList   = "Session.List"       // Empty -> SessionList
	MethodSessionGet    = "Session.Get"        // SessionRef -> Session
	MethodSessionStop   = "Session.Stop"       // StopRequest -> Session
	MethodSessionSignal = "Session.Signal"     // SignalRequest -> Empty
	MethodSessionResize = "Session.Resize"     // ResizeRequest -> Empty
	MethodSessionInput  = "Session.WriteInput" // InputRequest -> Empty
	MethodSessionClose  = "Session.CloseInput" // SessionRef -> Empty
	MethodSessionOutput = "Session.ReadOutput" // OutputRequest -> Output

	MethodFileStat   = "File.Stat"   // PathRequest -> FileInfo
	MethodFileList   = "File.List"   // PathRequest -> DirList
	MethodFileRead   = "File.Read"   // ReadRequest -> ReadReply
	MethodFileWrite  = "File.Write"  // WriteRequest -> FileInfo
	MethodFileMkdir  = "File.Mkdir"  // MkdirRequest -> FileInfo
	MethodFileRemove = "File.Remove" // RemoveRequest -> Empty
	MethodFileRename = "File.Rename" // RenameRequest -> FileInfo

	// Streaming transfers (protocol_files.go).
	MethodFileOpen    = "File.Open"    // OpenRequest -> OpenReply
	MethodFileCreate  = "File.Create"  // CreateRequest -> Upload
	MethodFileWriteAt = "File.WriteAt" // ChunkRequest -> Empty
	MethodFileCommit  = "File.Commit"  // CommitRequest -> CommitReply
	MethodFileAbort   = "File.Abort"   // UploadRef -> Empty
)

// Limits every agent enforces on what a caller controls. Requests over them
// fail with ErrTooLarge or ErrLimit.
const (
	MaxReadChunk   = 1 << 20  // bytes per File.Read and Session.ReadOutput
	MaxWriteSize   = 64 << 20 // bytes per File.Write
	MaxInputSize   = 1 << 20  // bytes per Session.WriteInput
	MaxArgvEnvSize = 256 << 10
	MaxWait        = 5 * time.Minute // longest ReadOutput wait
	DefaultGrace   = 10 * time.Second
)

// Empty is the request or reply of methods that need none.
type Empty struct{}

// Info describes an agent and the user it runs as.
type Info struct {
	User            string
	UID             uint32
	GID             uint32
	Home            string
	Workspace       string
	Version         string
	PID             int
	StartTime       time.Time
	RunningSessions int
}

// StartRequest starts a session: a process, without a shell.
type StartRequest struct {
	Argv []string
	// Cwd is relative to the workspace ("" is the workspace itself) and must stay inside it.
	Cwd string
	// Env is laid over a clean base of HOME, USER, LOGNAME, SHELL, PATH and LANG.
	Env  map[string]string
	Name string
	// TTY gives the process a pseudo-terminal of Rows x Cols (default 24x80).
	TTY  bool
	Rows uint16
	Cols uint16
}

// State is a session's life stage.
type State string

// Session states.
const (
	StateRunning State = "running"
	StateExited  State = "exited"
	StateFailed  State = "failed" // it never started; Error says why
	StateLost    State = "lost"   // the agent died while it ran
)

// Session is a session's record.
type Session struct {
	ID    string
	Name  string
	Argv  []string
	Cwd   string
	TTY   bool
	PID   int
	State State
	// ExitCode is the exit status when State is exited and Signal is empty;
	// Signal (e.g. "TERM") names the signal that ended the process. (Not a
	// pointer: gob does not send a pointer to zero, so exit 0 would be lost.)
	ExitCode   int
	Signal     string
	Error      string
	StartTime  time.Time
	EndTime    time.Time // zero while running
	OutputSize int64     // bytes of output produced so far, including any dropped by the cap
}

// SessionRef names a session.
type SessionRef struct{ ID string }

// SessionList is the reply of Session.List, oldest first.
type SessionList struct{ Sessions []Session }

// StopRequest stops a session: SIGTERM to its process group, then SIGKILL
// after Grace (DefaultGrace when zero).
type StopRequest struct {
	ID    string
	Grace time.Duration
}

// SignalRequest sends a signal, by name ("INT", "SIGINT") or number, to a session's process group.
type SignalRequest struct {
	ID     string
	Signal string
}

// ResizeRequest changes a tty session's terminal size.
type ResizeRequest struct {
	ID   string
	Rows uint16
	Cols uint16
}

// InputRequest writes to a session's standard input.
type InputRequest struct {
	ID   string
	Data []byte
}

// OutputRequest reads a session's merged stdout and stderr from Offset.
// With Wait > 0 it blocks until bytes past Offset exist, the session ends,
// or Wait passes.
type OutputRequest struct {
	ID     string
	Offset int64
	Max    int // 0 means MaxReadChunk
	Wait   time.Duration
}

// Output is a chunk of a session's output.
type Output struct {
	Data []byte
	// Offset is where Data starts: the requested offset, or Start when the
	// requested bytes were already dropped by the output cap.
	Offset int64
	Next   int64 // offset to ask for next
	Start  int64 // first offset still kept
	Size   int64 // total output so far
	// Done is true when the session has ended and Next == Size: nothing more will come.
	Done bool
}

// FileType classifies a directory entry.
type FileType string

// File types.
const (
	TypeFile    FileType = "file"
	TypeDir     FileType = "dir"
	TypeSymlink FileType = "symlink"
	TypeOther   FileType = "other"
)

// FileInfo describes a file in the workspace. Path-valued fields are relative to the workspace.
type FileInfo struct {
	Name    string
	Type    FileType
	Size    int64
	Mode    os.FileMode // permission bits only
	ModTime time.Time
	Target  string // symlink target, as stored
	Inode   uint64 // with Size and ModTime, what ETag is made of
}

// PathRequest names a path relative to the workspace.
type PathRequest struct{ Path string }

// DirList is a directory's entries, sorted by name.
type DirList struct{ Entries []FileInfo }

// ReadRequest reads Length bytes (at most MaxReadChunk; 0 means MaxReadChunk) from Offset.
type ReadRequest struct {
	Path   string
	Offset int64
	Length int
}

// ReadReply is a chunk of a file.
type ReadReply struct {
	Data []byte
	Info FileInfo // the file as it was when read
	EOF  bool     // Offset+len(Data) reached the end of the file
}

// WriteRequest replaces a file atomically: the data goes to a temporary file
// in the same directory, is synced, then renamed over Path.
type WriteRequest struct {
	Path string
	Data []byte
	// Mode is used for a new file (0 means 0644); a replaced file keeps its mode.
	Mode          os.FileMode
	CreateParents bool
	// CreateOnly fails with ErrExists if Path exists, decided atomically
	// (exclusive create: two writers cannot both succeed).
	CreateOnly bool
}

// MkdirRequest creates a directory (0 Mode means 0755).
type MkdirRequest struct {
	Path    string
	Mode    os.FileMode
	Parents bool // like mkdir -p: no error if it exists as a directory
}

// RemoveRequest removes a file, symlink or empty directory; Recursive removes a tree.
type RemoveRequest struct {
	Path      string
	Recursive bool
	// IfMatch, when set, is the ETag the path must have (or "*": it must
	// exist), checked just before removing; else ErrPrecondition.
	IfMatch string
}

// RenameRequest renames From to To within the workspace.
type RenameRequest struct {
	From      string
	To        string
	NoReplace bool // fail with ErrExists if To exists
}
