package logging_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/coreos/go-systemd/v22/journal"

	"octo/internal/logging"
)

type entry struct {
	msg    string
	pri    journal.Priority
	fields map[string]string
}

func capture(fail bool) (*[]entry, logging.SendFunc) {
	var got []entry
	return &got, func(msg string, pri journal.Priority, fields map[string]string) error {
		if fail {
			return errors.New("journal socket gone")
		}
		got = append(got, entry{msg, pri, fields})
		return nil
	}
}

// Each attribute is a field of its own, so journalctl can select entries by
// user, route, status or session.
func TestJournalFields(t *testing.T) {
	got, send := capture(false)
	var fb bytes.Buffer
	log := slog.New(logging.NewJournalHandler(send, "octo", slog.LevelInfo, logging.NewTextHandler(&fb, slog.LevelInfo)))
	log.With("user", "alice").Info("request", "route", "GET /api/v1/status", "status", 200, "session", "s1", "bytes", int64(12))
	log.WithGroup("agent").Warn("slow", "err", "it took 3s")
	log.Debug("below the level")
	if len(*got) != 2 {
		t.Fatalf("sent %d entries, want 2", len(*got))
	}
	e := (*got)[0]
	for k, want := range map[string]string{
		"OCTO_USER": "alice", "OCTO_ROUTE": "GET /api/v1/status", "OCTO_STATUS": "200",
		"OCTO_SESSION": "s1", "SYSLOG_IDENTIFIER": "octo",
	} {
		if e.fields[k] != want {
			t.Errorf("field %s = %q, want %q (fields %v)", k, e.fields[k], want, e.fields)
		}
	}
	if want := `request user=alice route="GET /api/v1/status" status=200 session=s1 bytes=12`; e.msg != want {
		t.Errorf("MESSAGE = %q, want %q", e.msg, want)
	}
	if e.pri != journal.PriInfo {
		t.Errorf("priority %d, want info (%d)", e.pri, journal.PriInfo)
	}
	if _, ok := e.fields["OCTO_BYTES"]; ok || len(e.fields) != 5 {
		t.Errorf("fields %v: want only the ones to search by (bytes stays in MESSAGE)", e.fields)
	}
	w := (*got)[1]
	if w.msg != `slow agent.err="it took 3s"` || w.pri != journal.PriWarning {
		t.Errorf("grouped warning: MESSAGE %q priority %d; want the group's key and warning", w.msg, w.pri)
	}
	if fb.Len() != 0 {
		t.Errorf("fallback written though the journal took the entries: %q", fb.String())
	}
}

// When the journal refuses an entry, it is written as text instead of lost.
func TestJournalFallback(t *testing.T) {
	_, send := capture(true)
	var fb bytes.Buffer
	log := slog.New(logging.NewJournalHandler(send, "octo", slog.LevelInfo, logging.NewTextHandler(&fb, slog.LevelInfo)))
	log.Info("request", "user", "bob")
	if got := fb.String(); !strings.Contains(got, "msg=request user=bob") || strings.Contains(got, "time=") {
		t.Errorf("fallback wrote %q, want the record as text without time", got)
	}
}

// The cost of one access log line, as text and as a journal entry (the
// send itself, one datagram, not included).
func BenchmarkRequestLine(b *testing.B) {
	attrs := []slog.Attr{slog.String("user", "alice"), slog.String("route", "GET /api/v1/files/{path...}"),
		slog.String("path", "/api/v1/files/notes/todo.txt"), slog.Int("status", 200), slog.Int64("bytes", 1024),
		slog.Duration("duration", 1234567)}
	for name, h := range map[string]slog.Handler{
		"text":    logging.NewTextHandler(io.Discard, slog.LevelInfo),
		"journal": logging.NewJournalHandler(func(string, journal.Priority, map[string]string) error { return nil }, "octo", slog.LevelInfo, logging.NewTextHandler(io.Discard, slog.LevelInfo)),
	} {
		log := slog.New(h)
		ctx := context.Background()
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				log.LogAttrs(ctx, slog.LevelInfo, "request", attrs...)
			}
		})
	}
}
