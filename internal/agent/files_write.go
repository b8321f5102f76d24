package agent

import (
	"os"

	"octo/internal/agentrpc"
)

// Write replaces a file atomically with data sent in the call: an upload
// (files_upload.go) created, written and committed at once. A replaced
// file's mode is kept; a symlink at the path is replaced, not followed.
func (f *FileService) Write(req *agentrpc.WriteRequest, reply *agentrpc.FileInfo) error {
	return f.c.do(func() error {
		if len(req.Data) > agentrpc.MaxWriteSize {
			return errorf(agentrpc.CodeTooLarge, "write %s: %d bytes is over the %d byte limit per call; upload it with File.Create", req.Path, len(req.Data), agentrpc.MaxWriteSize)
		}
		u, err := f.create(&agentrpc.CreateRequest{Path: req.Path, Mode: req.Mode,
			CreateParents: req.CreateParents, CreateOnly: req.CreateOnly})
		if err != nil {
			return err
		}
		defer u.abort() // after the commit, only the record is left to remove
		if _, err := u.fh.Write(req.Data); err != nil {
			return fileErr("write", u.rel, err)
		}
		var cr agentrpc.CommitReply
		if err := f.commit(u, &agentrpc.CommitRequest{Size: int64(len(req.Data))}, &cr); err != nil {
			return err
		}
		*reply = cr.Info
		return nil
	})
}

// syncDir makes a rename in d durable. Failure only weakens durability.
func syncDir(d *os.Root) {
	if df, err := d.Open("."); err == nil {
		df.Sync()
		df.Close()
	}
}
