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
// $JOURNAL_STREAM says stderr is the journal, else text on stderr. It logs
// Info and above, or from the level $OCTO_LOG_LEVEL names (debug, info,
// warn, error).
func New() *slog.Logger {
	level := levelFrom(os.Getenv("OCTO_LOG_LEVEL"))
	text := NewTextHandler(os.Stderr, level)
	if onJournal() {
		return slog.New(NewJournalHandler(journal.Send, filepath.Base(os.Args[0]), level, text))
	}
	return slog.New(text)
}

// levelFrom parses a level name; anything else is Info.
func levelFrom(s string) slog.Level {
	var l slog.Level
	if l.UnmarshalText([]byte(s)) != nil {
		return slog.LevelInfo
	}
	return l
}

// onJournal reports whether stderr is connected to the journal, as systemd
// says in $JOURNAL_STREAM for services whose StandardError= is the journal.
// Then journald runs; journal.Enabled's test connection to its socket would
// cost every agent start a socket and a connect (about 2% of a start's CPU),
// and a line journald refuses goes to stderr anyway (JournalHandler).
func onJournal() bool {
	ok, err := journal.StderrIsJournalStream()
	return ok && err == nil
}

// NewTextHandler logs text from level on to w, without timestamps:
// journald, or whatever collects stderr, adds its own.
func NewTextHandler(w io.Writer, level slog.Leveler) slog.Handler {
	return slog.NewTextHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: dropTime})
}

func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}
