package logging

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/coreos/go-systemd/v22/journal"
)

// SendFunc sends one journal entry; journal.Send is the real one.
type SendFunc func(message string, priority journal.Priority, fields map[string]string) error

// JournalHandler writes records to the journal natively: MESSAGE is the
// message followed by the attributes as key=value (as journalctl shows it),
// PRIORITY follows the level, and the attributes one selects entries by
// (searchFields: user, route, status, session, caller, code) are also
// fields of their own, OCTO_USER and so on. An entry the journal refuses
// goes to the fallback handler.
type JournalHandler struct {
	send     SendFunc
	ident    string
	level    slog.Leveler
	fallback slog.Handler
	prefix   string      // open groups, "g1.g2."
	attrs    []slog.Attr // from WithAttrs, keys already prefixed
}

// NewJournalHandler returns a handler sending records from level on with
// send under the syslog identifier ident, falling back to fallback when
// sending fails.
func NewJournalHandler(send SendFunc, ident string, level slog.Leveler, fallback slog.Handler) *JournalHandler {
	return &JournalHandler{send: send, ident: ident, level: level, fallback: fallback}
}

func (h *JournalHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *JournalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h2 := *h
	h2.attrs = append(h2.attrs[:len(h2.attrs):len(h2.attrs)], prefixed(h.prefix, as)...)
	h2.fallback = h.fallback.WithAttrs(as)
	return &h2
}

func (h *JournalHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.prefix += name + "."
	h2.fallback = h.fallback.WithGroup(name)
	return &h2
}

func prefixed(prefix string, as []slog.Attr) []slog.Attr {
	if prefix == "" {
		return as
	}
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = slog.Attr{Key: prefix + a.Key, Value: a.Value}
	}
	return out
}

func (h *JournalHandler) Handle(ctx context.Context, r slog.Record) error {
	var msg strings.Builder
	msg.WriteString(r.Message)
	fields := make(map[string]string, len(h.attrs)+r.NumAttrs()+1)
	if h.ident != "" {
		fields["SYSLOG_IDENTIFIER"] = h.ident
	}
	add := func(key string, v slog.Value) {
		s := v.String()
		msg.WriteByte(' ')
		msg.WriteString(key)
		msg.WriteByte('=')
		msg.WriteString(quote(s))
		if f, ok := searchFields[key]; ok {
			fields[f] = s
		}
	}
	for _, a := range h.attrs {
		flatten("", a, add)
	}
	r.Attrs(func(a slog.Attr) bool {
		flatten(h.prefix, a, add)
		return true
	})
	if err := h.send(msg.String(), priority(r.Level), fields); err != nil {
		return h.fallback.Handle(ctx, r)
	}
	return nil
}

// flatten calls add for each leaf of a, groups joined with dots.
func flatten(prefix string, a slog.Attr, add func(string, slog.Value)) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, g := range v.Group() {
			flatten(p, g, add)
		}
		return
	}
	if a.Key == "" {
		return
	}
	add(prefix+a.Key, v)
}

// searchFields are the attributes that are also journal fields of their
// own, to select entries by: OCTO_ and the key in capitals. Only these: the
// journal indexes every field value, and per-request values (bytes,
// duration, path) would double what each line costs journald
// (BenchmarkAccessLogJournald in e2e); they stay in MESSAGE.
var searchFields = map[string]string{
	KeyUser:    "OCTO_USER",
	KeyRoute:   "OCTO_ROUTE",
	KeyStatus:  "OCTO_STATUS",
	KeySession: "OCTO_SESSION",
	"caller":   "OCTO_CALLER",
	"code":     "OCTO_CODE",
}

func priority(l slog.Level) journal.Priority {
	switch {
	case l >= slog.LevelError:
		return journal.PriErr
	case l >= slog.LevelWarn:
		return journal.PriWarning
	case l >= slog.LevelInfo:
		return journal.PriInfo
	}
	return journal.PriDebug
}

// quote quotes s as the text handler would: when it is empty or holds
// spaces, quotes, '=' or anything unprintable.
func quote(s string) string {
	if s == "" || !utf8.ValidString(s) {
		return strconv.Quote(s)
	}
	for _, c := range s {
		if c <= ' ' || c == '"' || c == '=' || c == 0x7f || !strconv.IsPrint(c) {
			return strconv.Quote(s)
		}
	}
	return s
}
