// Package logging sets up log/slog for octo's binaries: native journald
// entries with searchable fields when stderr is the journal, plain text
// without timestamps otherwise.
package logging

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/coreos/go-systemd/v22/journal"
)

// Attribute names the control plane and the agent log under, which the
// journal handler also stores as the fields OCTO_USER, OCTO_ROUTE, ... so
// that `journalctl -u octo OCTO_USER=alice` shows alice's requests.
const (
	KeyUser     = "user"
	KeyRoute    = "route"
	KeyStatus   = "status"
	KeyBytes    = "bytes"
	KeyDuration = "duration"
	KeySession  = "session"
)

// New returns the logger of a binary: native journald logging when
// $JOURNAL_STREAM says stderr is the journal, else text on stderr.
func New() *slog.Logger {
	if onJournal() {
		return slog.New(NewJournalHandler(journal.Send, filepath.Base(os.Args[0]), NewTextHandler(os.Stderr)))
	}
	return slog.New(NewTextHandler(os.Stderr))
}

// onJournal reports whether stderr is connected to the journal, as systemd
// says in $JOURNAL_STREAM for services whose StandardError= is the journal.
func onJournal() bool {
	ok, err := journal.StderrIsJournalStream()
	return ok && err == nil && journal.Enabled()
}

// NewTextHandler logs text to w without timestamps: journald, or whatever
// collects stderr, adds its own.
func NewTextHandler(w io.Writer) slog.Handler {
	return slog.NewTextHandler(w, &slog.HandlerOptions{ReplaceAttr: dropTime})
}

func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}
