package agent

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"

	"octo/internal/agentrpc"
)

// maxDirEntries bounds the reply of File.List.
const maxDirEntries = 100000

// FileService is the File net/rpc service: file access inside the workspace.
// Every path is relative to the workspace and resolved with os.Root, so
// neither "..", absolute paths nor symlinks can leave it.
type FileService struct{ c *call }

// cleanRel checks a workspace-relative path and returns it cleaned ("." for
// the workspace itself).
func cleanRel(p string) (string, error) {
	if strings.IndexByte(p, 0) >= 0 {
		return "", errorf(agentrpc.CodeInvalid, "path %q contains a NUL byte", p)
	}
	if path.IsAbs(p) {
		return "", errorf(agentrpc.CodeOutsideWorkspace, "path %q is absolute; give a path relative to the workspace", p)
	}
	c := path.Clean(p)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", errorf(agentrpc.CodeOutsideWorkspace, "path %q is outside the workspace", p)
	}
	return c, nil
}

// splitRel splits a cleaned path that is not "." into its directory and name.
func splitRel(rel string) (dir, name string) {
	dir, name = path.Split(rel)
	if dir == "" {
		dir = "."
	}
	return path.Clean(dir), name
}

// Stat describes a path without following a final symlink.
func (f *FileService) Stat(req *agentrpc.PathRequest, reply *agentrpc.FileInfo) error {
	return f.c.do(func() error {
		rel, err := cleanRel(req.Path)
		if err != nil {
			return err
		}
		fi, err := f.stat(f.c.s.root, rel)
		if err != nil {
			return err
		}
		*reply = fi
		return nil
	})
}

// stat describes rel in r, with its symlink target if it is one.
func (f *FileService) stat(r *os.Root, rel string) (agentrpc.FileInfo, error) {
	st, err := r.Lstat(rel)
	if err != nil {
		return agentrpc.FileInfo{}, fileErr("stat", rel, err)
	}
	fi := toInfo(st)
	if rel == "." {
		fi.Name = "."
	}
	if fi.Type == agentrpc.TypeSymlink {
		fi.Target, _ = r.Readlink(rel)
	}
	return fi, nil
}

// etagOf is the ETag of what a GET of rel serves: the file a final
// symlink leads to (within the workspace); "" if there is none.
func etagOf(r *os.Root, rel string) string {
	st, err := r.Stat(rel)
	if err != nil {
		return ""
	}
	fi := toInfo(st)
	return fi.ETag()
}

func toInfo(st fs.FileInfo) agentrpc.FileInfo {
	t := agentrpc.TypeOther
	switch m := st.Mode(); {
	case m.IsRegular():
		t = agentrpc.TypeFile
	case m.IsDir():
		t = agentrpc.TypeDir
	case m&fs.ModeSymlink != 0:
		t = agentrpc.TypeSymlink
	}
	fi := agentrpc.FileInfo{Name: st.Name(), Type: t, Size: st.Size(), Mode: st.Mode().Perm(), ModTime: st.ModTime()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		fi.Inode = sys.Ino
	}
	return fi
}

// List lists a directory, sorted by name.
func (f *FileService) List(req *agentrpc.PathRequest, reply *agentrpc.DirList) error {
	return f.c.do(func() error {
		rel, err := cleanRel(req.Path)
		if err != nil {
			return err
		}
		d, err := f.c.s.root.OpenRoot(rel)
		if err != nil {
			return fileErr("list", rel, err)
		}
		defer d.Close()
		dir, err := d.Open(".")
		if err != nil {
			return fileErr("list", rel, err)
		}
		defer dir.Close()
		ents, err := dir.ReadDir(maxDirEntries + 1)
		if err != nil && !errors.Is(err, io.EOF) {
			return fileErr("list", rel, err)
		}
		if len(ents) > maxDirEntries {
			return errorf(agentrpc.CodeTooLarge, "list %s: more than %d entries", rel, maxDirEntries)
		}
		slices.SortFunc(ents, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
		out := make([]agentrpc.FileInfo, 0, len(ents))
		for _, e := range ents {
			st, err := e.Info()
			if err != nil {
				continue // removed since it was read
			}
			fi := toInfo(st)
			if fi.Type == agentrpc.TypeSymlink {
				fi.Target, _ = d.Readlink(e.Name())
			}
			out = append(out, fi)
		}
		reply.Entries = out
		return nil
	})
}

// Read reads a chunk of a regular file: downloads over a connection that
// cannot pass descriptors.
func (f *FileService) Read(req *agentrpc.ReadRequest, reply *agentrpc.ReadReply) error {
	return f.c.do(func() error {
		rel, err := cleanRel(req.Path)
		if err != nil {
			return err
		}
		n := req.Length
		switch {
		case n < 0 || req.Offset < 0:
			return errorf(agentrpc.CodeInvalid, "read %s: negative offset or length", rel)
		case n == 0:
			n = agentrpc.MaxReadChunk
		case n > agentrpc.MaxReadChunk:
			return errorf(agentrpc.CodeTooLarge, "read %s: length %d is over the %d byte chunk limit; read in chunks", rel, n, agentrpc.MaxReadChunk)
		}
		fh, err := openRead(f.c.s.root, f.c.s.wsDir.fd, rel)
		if errors.Is(err, errIsDir) {
			return errorf(agentrpc.CodeInvalid, "read %s: is a directory", rel)
		}
		if err != nil {
			return err
		}
		defer fh.Close()
		st, err := fh.Stat()
		if err != nil {
			return fileErr("read", rel, err)
		}
		avail := max(st.Size()-req.Offset, 0)
		buf := getChunk(int(min(int64(n), avail)))
		got, err := fh.ReadAt(buf, req.Offset)
		if err != nil && !errors.Is(err, io.EOF) {
			putChunk(buf)
			return fileErr("read", rel, err)
		}
		reply.Data = buf[:got]
		reply.Info = toInfo(st)
		reply.EOF = req.Offset+int64(got) >= st.Size()
		return nil
	})
}

// Mkdir creates a directory.
func (f *FileService) Mkdir(req *agentrpc.MkdirRequest, reply *agentrpc.FileInfo) error {
	return f.c.do(func() error {
		rel, err := cleanRel(req.Path)
		if err != nil {
			return err
		}
		if req.Mode&^fs.ModePerm != 0 {
			return errorf(agentrpc.CodeInvalid, "mkdir %s: mode %v has more than permission bits", rel, req.Mode)
		}
		mode := req.Mode
		if mode == 0 {
			mode = 0o755
		}
		if req.Parents {
			err = f.c.s.root.MkdirAll(rel, mode)
		} else {
			err = f.c.s.root.Mkdir(rel, mode)
		}
		if err != nil {
			return fileErr("mkdir", rel, err)
		}
		fi, err := f.stat(f.c.s.root, rel)
		if err != nil {
			return err
		}
		*reply = fi
		return nil
	})
}

// Remove removes a file, symlink or empty directory, or a tree if asked.
func (f *FileService) Remove(req *agentrpc.RemoveRequest, _ *agentrpc.Empty) error {
	return f.c.do(func() error {
		rel, err := cleanRel(req.Path)
		if err != nil {
			return err
		}
		if rel == "." {
			return errorf(agentrpc.CodeInvalid, "remove: refusing to remove the workspace itself")
		}
		r := f.c.s.root
		if _, err := r.Lstat(rel); err != nil {
			return fileErr("remove", rel, err)
		}
		if req.IfMatch != "" && req.IfMatch != "*" && etagOf(r, rel) != req.IfMatch {
			return errorf(agentrpc.CodePrecondition, "remove %s: the file changed (its ETag is no longer %s); nothing was removed", rel, req.IfMatch)
		}
		if req.Recursive {
			err = r.RemoveAll(rel)
		} else {
			err = r.Remove(rel)
		}
		return fileErr("remove", rel, err)
	})
}

// Rename renames a path within the workspace.
func (f *FileService) Rename(req *agentrpc.RenameRequest, reply *agentrpc.FileInfo) error {
	return f.c.do(func() error {
		from, err := cleanRel(req.From)
		if err != nil {
			return err
		}
		to, err := cleanRel(req.To)
		if err != nil {
			return err
		}
		if from == "." || to == "." {
			return errorf(agentrpc.CodeInvalid, "rename: cannot rename the workspace itself")
		}
		r := f.c.s.root
		if req.NoReplace {
			if _, err := r.Lstat(to); err == nil {
				return errorf(agentrpc.CodeExists, "rename %s to %s: target exists", from, to)
			}
		}
		if err := r.Rename(from, to); err != nil {
			return fileErr("rename "+from+" to", to, err)
		}
		fi, err := f.stat(r, to)
		if err != nil {
			return err
		}
		*reply = fi
		return nil
	})
}
