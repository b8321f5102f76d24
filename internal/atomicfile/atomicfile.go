// Package atomicfile replaces a file so that readers and crashes see the
// old contents or the new ones, never a mix: write a temporary file beside
// it, then rename it over.
package atomicfile

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Options says how Write makes the new file.
type Options struct {
	// Durable syncs the file before the rename and the directory after,
	// so that the new contents survive a crash once Write returns.
	Durable bool
	// Prepare, if set, is called on the temporary file before the rename
	// (to chown it, say): the file appears at path already prepared.
	Prepare func(tmp *os.File) error
}

// Write replaces path with data, with permissions perm. The temporary file
// is created exclusively in path's directory (never following a planted
// link) and removed if anything fails; on failure path is unchanged.
func Write(path string, data []byte, perm fs.FileMode, o Options) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	err = tmp.Chmod(perm)
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil && o.Durable {
		err = tmp.Sync()
	}
	if err == nil && o.Prepare != nil {
		err = o.Prepare(tmp)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	if o.Durable {
		if d, err := os.Open(dir); err == nil {
			d.Sync()
			d.Close()
		}
	}
	return nil
}
