package agentrpc

import (
	"os"
	"strconv"
)

// Files move by descriptor where the connection can pass one (a Unix
// socket): the agent opens, as the user and confined to the workspace, and
// the control plane reads or writes the descriptor it was passed. Without
// descriptor passing (a remote agent) the same calls move the bytes in
// chunks: File.Read for downloads, File.WriteAt for uploads.

// MaxInline is the largest file File.Open returns in its reply instead of
// by descriptor.
const MaxInline = 64 << 10

// OpenRequest opens a file in the workspace for reading.
type OpenRequest struct {
	Path string
	// Inline asks for the file's bytes in the reply when it is at most
	// Inline bytes (at most MaxInline): a small file costs one call.
	Inline int
	// FD asks for a read-only descriptor of the file. The agent passes one
	// only on a connection that can carry it (Client sets it then).
	FD bool
}

// OpenReply describes an opened file. A directory is described (Info.Type
// TypeDir) but not opened; any other type that is not a regular file is
// refused with ErrInvalid.
type OpenReply struct {
	Info FileInfo
	// Inline is true when Data holds the whole file.
	Inline bool
	Data   []byte
	// File is a read-only descriptor of a regular file, when FD was asked
	// for and the file was not inline. The receiver closes it.
	File *os.File
}

// CreateRequest starts an upload: the agent creates a temporary file in
// Path's directory, which File.Commit renames over Path and File.Abort
// removes; an upload its connection leaves unfinished is aborted.
type CreateRequest struct {
	Path string
	// Mode is used for a new file (0 means 0644); a replaced file keeps its mode.
	Mode          os.FileMode
	CreateParents bool
	// CreateOnly makes Commit fail with ErrExists if Path exists then,
	// decided atomically (link(2)); Create fails early if it exists now.
	CreateOnly bool
	// FD asks for a write-only descriptor of the temporary file.
	FD bool
}

// Upload is an upload in progress.
type Upload struct {
	ID string
	// File is a write-only descriptor of the temporary file, when FD was
	// asked for. The receiver closes it before File.Commit.
	File *os.File
}

// ChunkRequest writes Data at Offset of an upload's temporary file (at
// most MaxWriteChunk bytes): uploads over a connection without descriptors.
type ChunkRequest struct {
	ID     string
	Offset int64
	Data   []byte
}

// MaxWriteChunk bounds the data of one File.WriteAt.
const MaxWriteChunk = 1 << 20

// CommitRequest finishes an upload: the temporary file, which must hold
// exactly Size bytes, is synced and renamed over the upload's path.
type CommitRequest struct {
	ID   string
	Size int64
	// IfMatch, when set, is the ETag the replaced file must have (or "*":
	// a file must exist), checked just before the rename; else
	// ErrPrecondition, and the upload is aborted.
	IfMatch string
}

// CommitReply describes the committed file.
type CommitReply struct {
	Info    FileInfo
	Created bool // no file was at the path before
}

// UploadRef names an upload.
type UploadRef struct{ ID string }

// ETag is a strong entity tag of the file's contents as far as the kernel
// tells: inode, size and modification time in nanoseconds, in hex. A file
// replaced by an upload gets a new inode, so its tag changes even within
// one clock tick.
func (fi *FileInfo) ETag() string {
	var buf [52]byte // three hex numbers of at most 16 digits, two dashes, quotes
	b := append(buf[:0], '"')
	b = strconv.AppendUint(b, fi.Inode, 16)
	b = append(b, '-')
	b = strconv.AppendInt(b, fi.Size, 16)
	b = append(b, '-')
	b = strconv.AppendInt(b, fi.ModTime.UnixNano(), 16)
	return string(append(b, '"'))
}
