package agent

import (
	"crypto/rand"
	"encoding/hex"
	"io/fs"
	"os"

	"octo/internal/agentrpc"
)

// Write replaces a file atomically: temporary file in the same directory,
// fsync, rename (or link, for CreateOnly), fsync of the directory. A
// replaced file's mode is kept; a symlink at the path is replaced, not
// followed.
func (f *FileService) Write(req *agentrpc.WriteRequest, reply *agentrpc.FileInfo) error {
	return f.c.do(func() error {
		fi, err := f.write(req)
		if err != nil {
			return err
		}
		*reply = fi
		return nil
	})
}

func (f *FileService) write(req *agentrpc.WriteRequest) (agentrpc.FileInfo, error) {
	rel, err := cleanRel(req.Path)
	if err != nil {
		return agentrpc.FileInfo{}, err
	}
	if rel == "." {
		return agentrpc.FileInfo{}, errorf(agentrpc.CodeInvalid, "write: path is the workspace itself; name a file")
	}
	if len(req.Data) > agentrpc.MaxWriteSize {
		return agentrpc.FileInfo{}, errorf(agentrpc.CodeTooLarge, "write %s: %d bytes is over the %d byte limit per call", rel, len(req.Data), agentrpc.MaxWriteSize)
	}
	if req.Mode&^fs.ModePerm != 0 {
		return agentrpc.FileInfo{}, errorf(agentrpc.CodeInvalid, "write %s: mode %v has more than permission bits", rel, req.Mode)
	}
	dir, name := splitRel(rel)
	if req.CreateParents {
		if err := f.c.s.root.MkdirAll(dir, 0o755); err != nil {
			return agentrpc.FileInfo{}, fileErr("create parents of", rel, err)
		}
	}
	d, err := f.c.s.root.OpenRoot(dir)
	if err != nil {
		return agentrpc.FileInfo{}, fileErr("write", rel, err)
	}
	defer d.Close()
	mode := req.Mode
	if mode == 0 {
		mode = 0o644
	}
	if st, err := d.Lstat(name); err == nil {
		switch {
		case req.CreateOnly:
			return agentrpc.FileInfo{}, errorf(agentrpc.CodeExists, "write %s: already exists", rel)
		case st.IsDir():
			return agentrpc.FileInfo{}, errorf(agentrpc.CodeInvalid, "write %s: is a directory", rel)
		case st.Mode().IsRegular():
			mode = st.Mode().Perm()
		}
	}
	tmp, err := writeTemp(d, name, req.Data, mode)
	if err != nil {
		return agentrpc.FileInfo{}, fileErr("write", rel, err)
	}
	if req.CreateOnly {
		// link fails if name exists: exactly one of two writers wins.
		err = d.Link(tmp, name)
		d.Remove(tmp)
	} else {
		err = d.Rename(tmp, name)
		if err != nil {
			d.Remove(tmp)
		}
	}
	if err != nil {
		return agentrpc.FileInfo{}, fileErr("write", rel, err)
	}
	syncDir(d)
	return f.stat(d, name)
}

// writeTemp writes data to a new temporary file next to name in d, with
// mode, synced, and returns its name.
func writeTemp(d *os.Root, name string, data []byte, mode fs.FileMode) (string, error) {
	var rnd [6]byte
	rand.Read(rnd[:])
	base := name
	if len(base) > 128 {
		base = base[:128]
	}
	tmp := "." + base + ".octo-tmp-" + hex.EncodeToString(rnd[:])
	fh, err := d.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	_, err = fh.Write(data)
	if err == nil {
		err = fh.Chmod(mode)
	}
	if err == nil {
		err = fh.Sync()
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		d.Remove(tmp)
		return "", err
	}
	return tmp, nil
}

// syncDir makes a rename in d durable. Failure only weakens durability.
func syncDir(d *os.Root) {
	if df, err := d.Open("."); err == nil {
		df.Sync()
		df.Close()
	}
}
