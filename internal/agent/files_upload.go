package agent

import (
	"crypto/rand"
	"encoding/hex"
	"io/fs"
	"os"
	"path"
	"sync"

	"golang.org/x/sys/unix"

	"octo/internal/agentrpc"
)

// An upload streams into a temporary file next to its target, created by
// the agent as the user: the control plane writes the descriptor the agent
// passed (or sends File.WriteAt chunks), then File.Commit syncs and renames
// it over the target, so that a reader, and a crash, sees the old file or
// the new one, never a mix. Uploads belong to their connection: one left
// unfinished when the connection ends is aborted. Each temporary file is
// also listed in the state dir (uploads/ID), so that one left by a killed
// agent is removed at the next start.

// maxUploadsPerConn bounds the uploads open on one connection.
const maxUploadsPerConn = 256

type upload struct {
	id         string
	rel        string // the target, workspace-relative
	dir        *os.Root
	name, tmp  string // in dir
	fh         *os.File
	mode       fs.FileMode // for a new file
	createOnly bool
	marker     string // the state dir's record of tmp
}

// uploadSet is a connection's uploads in progress.
type uploadSet struct {
	mu sync.Mutex
	m  map[string]*upload
}

func (us *uploadSet) add(u *upload) bool {
	us.mu.Lock()
	defer us.mu.Unlock()
	if us.m == nil {
		us.m = map[string]*upload{}
	}
	if len(us.m) >= maxUploadsPerConn {
		return false
	}
	us.m[u.id] = u
	return true
}

// get returns an upload, leaving it in the set.
func (us *uploadSet) get(id string) (*upload, error) {
	us.mu.Lock()
	defer us.mu.Unlock()
	if u := us.m[id]; u != nil {
		return u, nil
	}
	return nil, errorf(agentrpc.CodeNotFound, "upload %q: no such upload on this connection (finished, aborted, or the agent restarted)", id)
}

// take removes an upload from the set and returns it.
func (us *uploadSet) take(id string) (*upload, error) {
	u, err := us.get(id)
	if err == nil {
		us.mu.Lock()
		delete(us.m, id)
		us.mu.Unlock()
	}
	return u, err
}

// abortAll aborts every upload left, once the connection has ended.
func (us *uploadSet) abortAll() {
	us.mu.Lock()
	m := us.m
	us.m = nil
	us.mu.Unlock()
	for _, u := range m {
		u.abort()
	}
}

// abort removes the temporary file and its record.
func (u *upload) abort() {
	u.fh.Close()
	u.dir.Remove(u.tmp)
	u.dir.Close()
	os.Remove(u.marker)
}

// Create starts an upload.
func (f *FileService) Create(req *agentrpc.CreateRequest, reply *agentrpc.Upload) error {
	return f.c.do(func() error {
		u, err := f.create(req)
		if err != nil {
			return err
		}
		if !f.c.uploads.add(u) {
			u.abort()
			return errorf(agentrpc.CodeLimit, "create %s: %d uploads already open on this connection", u.rel, maxUploadsPerConn)
		}
		reply.ID = u.id
		if req.FD && f.c.fds {
			// Only the upload's own temporary file, write-only, leaves
			// the agent for a write: never a directory or the target.
			wfd, err := unix.FcntlInt(u.fh.Fd(), unix.F_DUPFD_CLOEXEC, 0)
			if err != nil {
				f.c.uploads.take(u.id)
				u.abort()
				return fileErr("create", u.rel, err)
			}
			reply.File = os.NewFile(uintptr(wfd), u.tmp)
		}
		return nil
	})
}

func (f *FileService) create(req *agentrpc.CreateRequest) (*upload, error) {
	rel, err := cleanRel(req.Path)
	if err != nil {
		return nil, err
	}
	if rel == "." {
		return nil, errorf(agentrpc.CodeInvalid, "write: path is the workspace itself; name a file")
	}
	if req.Mode&^fs.ModePerm != 0 {
		return nil, errorf(agentrpc.CodeInvalid, "write %s: mode %v has more than permission bits", rel, req.Mode)
	}
	dir, name := splitRel(rel)
	if req.CreateParents {
		if err := f.c.s.root.MkdirAll(dir, 0o755); err != nil {
			return nil, fileErr("create parents of", rel, err)
		}
	}
	d, err := f.c.s.root.OpenRoot(dir)
	if err != nil {
		return nil, fileErr("write", rel, err)
	}
	if st, err := d.Lstat(name); err == nil {
		switch {
		case req.CreateOnly:
			d.Close()
			return nil, errorf(agentrpc.CodeExists, "write %s: already exists", rel)
		case st.IsDir():
			d.Close()
			return nil, errorf(agentrpc.CodeInvalid, "write %s: is a directory", rel)
		}
	}
	u := &upload{id: randomHex(12), rel: rel, dir: d, name: name, mode: req.Mode, createOnly: req.CreateOnly}
	if u.mode == 0 {
		u.mode = 0o644
	}
	u.tmp = tempName(name)
	u.marker = f.c.s.uploadMarker(u.id)
	// The record first: a temporary file never exists unrecorded.
	if err := os.WriteFile(u.marker, []byte(path.Join(dir, u.tmp)), 0o600); err != nil {
		d.Close()
		return nil, errorf(agentrpc.CodeInternal, "write %s: record the upload in the state dir: %v", rel, bare(err))
	}
	u.fh, err = d.OpenFile(u.tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		os.Remove(u.marker)
		d.Close()
		return nil, fileErr("write", rel, err)
	}
	return u, nil
}

// tempName is a new temporary file name next to name.
func tempName(name string) string {
	base := name
	if len(base) > 128 {
		base = base[:128]
	}
	return "." + base + tempInfix + randomHex(6)
}

// tempInfix marks the agent's temporary files.
const tempInfix = ".octo-tmp-"

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// WriteAt writes a chunk of an upload: uploads without descriptor passing.
func (f *FileService) WriteAt(req *agentrpc.ChunkRequest, _ *agentrpc.Empty) error {
	return f.c.do(func() error {
		u, err := f.c.uploads.get(req.ID)
		if err != nil {
			return err
		}
		if req.Offset < 0 || len(req.Data) > agentrpc.MaxWriteChunk {
			return errorf(agentrpc.CodeInvalid, "write %s: chunk at %d of %d bytes: offset must be positive and a chunk at most %d bytes", u.rel, req.Offset, len(req.Data), agentrpc.MaxWriteChunk)
		}
		if _, err := u.fh.WriteAt(req.Data, req.Offset); err != nil {
			return fileErr("write", u.rel, err)
		}
		return nil
	})
}

// Commit syncs an upload's temporary file and renames it over the target
// (create-only: links it, which fails if the target exists), keeping the
// mode of a replaced regular file.
func (f *FileService) Commit(req *agentrpc.CommitRequest, reply *agentrpc.CommitReply) error {
	return f.c.do(func() error {
		u, err := f.c.uploads.take(req.ID)
		if err != nil {
			return err
		}
		defer u.abort() // after a rename, tmp is gone already
		return f.commit(u, req, reply)
	})
}

func (f *FileService) commit(u *upload, req *agentrpc.CommitRequest, reply *agentrpc.CommitReply) error {
	st, err := u.fh.Stat()
	if err != nil {
		return fileErr("write", u.rel, err)
	}
	if st.Size() != req.Size {
		return errorf(agentrpc.CodeInvalid, "write %s: upload holds %d bytes, the commit says %d; nothing was written", u.rel, st.Size(), req.Size)
	}
	mode := u.mode
	old, err := f.stat(u.dir, u.name)
	exists := err == nil
	if exists && old.Type == agentrpc.TypeFile {
		mode = old.Mode
	}
	switch {
	case req.IfMatch == "*" && !exists:
		return errorf(agentrpc.CodePrecondition, "write %s: If-Match: * but the file does not exist; nothing was written", u.rel)
	case req.IfMatch != "" && req.IfMatch != "*" && etagOf(u.dir, u.name) != req.IfMatch:
		return errorf(agentrpc.CodePrecondition, "write %s: the file changed (its ETag is no longer %s); nothing was written", u.rel, req.IfMatch)
	}
	if err := u.fh.Chmod(mode); err != nil {
		return fileErr("write", u.rel, err)
	}
	if err := u.fh.Sync(); err != nil {
		return fileErr("write", u.rel, err)
	}
	if u.createOnly {
		// link fails if name exists: exactly one of two writers wins.
		err = u.dir.Link(u.tmp, u.name)
	} else {
		err = u.dir.Rename(u.tmp, u.name)
	}
	if err != nil {
		return fileErr("write", u.rel, err)
	}
	syncDir(u.dir)
	fi, err := f.stat(u.dir, u.name)
	if err != nil {
		return err
	}
	reply.Info, reply.Created = fi, !exists
	return nil
}

// Abort removes an upload's temporary file.
func (f *FileService) Abort(req *agentrpc.UploadRef, _ *agentrpc.Empty) error {
	return f.c.do(func() error {
		u, err := f.c.uploads.take(req.ID)
		if err != nil {
			return err
		}
		u.abort()
		return nil
	})
}
