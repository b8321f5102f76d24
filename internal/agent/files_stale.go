package agent

import (
	"os"
	"path"
	"path/filepath"
	"strings"
)

// uploadsDir is the state dir's folder of upload records: one file per
// upload in progress, holding its temporary file's workspace path.
func (s *Server) uploadsDir() string { return filepath.Join(s.cfg.StateDir, "uploads") }

// uploadMarker is the record of upload id.
func (s *Server) uploadMarker(id string) string { return filepath.Join(s.uploadsDir(), id) }

// removeStaleUploads removes the temporary files that an agent killed in
// the middle of uploads left, and their records. It runs at start, under
// the state dir's lock: no other agent of this user has uploads open.
func (s *Server) removeStaleUploads() error {
	dir := s.uploadsDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		marker := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(marker)
		if err == nil {
			tmp := string(b)
			// Only a name the agent makes is removed: a record cannot be
			// used to delete anything else in the workspace.
			if name := path.Base(tmp); strings.HasPrefix(name, ".") && strings.Contains(name, tempInfix) {
				if err := s.root.Remove(tmp); err == nil {
					s.log.Info("removed a stale upload", "path", tmp)
				}
			}
		}
		os.Remove(marker)
	}
	return nil
}
