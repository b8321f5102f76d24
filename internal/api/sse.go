package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"unicode/utf8"

	"octo/internal/agentrpc"
	"octo/internal/backend"
)

// outputEventJSON is an SSE "output" event: the bytes from Offset to Next,
// as text when they are valid UTF-8, else in base64. Next - Offset is
// always the number of bytes carried.
type outputEventJSON struct {
	Offset  int64  `json:"offset"`
	Next    int64  `json:"next"`
	Data    string `json:"data,omitempty"`
	DataB64 string `json:"data_b64,omitempty"`
}

// gapEventJSON is an SSE "gap" event: output dropped before it was read.
type gapEventJSON struct {
	From int64 `json:"from"`
	To   int64 `json:"to"`
}

// streamSSE sends output as Server-Sent Events whose ids are offsets, so a
// client reconnecting with Last-Event-ID resumes where it stopped. The
// final "end" event carries the session's record; a reconnect after it
// gets 204.
func (s *Server) streamSSE(w http.ResponseWriter, r *http.Request, u backend.User, out agentrpc.Output) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, ": %s output from offset %d\n\n", r.PathValue("id"), out.Offset)
	rc.Flush()
	ev := &sseOutput{w: w}
	end := s.follow(r, u, out, followFuncs{
		send: func(o agentrpc.Output) error {
			if err := ev.send(o.Offset, o.Data, o.Done); err != nil {
				return err
			}
			return rc.Flush()
		},
		idle: func() error {
			// A held back partial character waits no longer: send it as is.
			if err := ev.flush(); err != nil {
				return err
			}
			if _, err := w.Write([]byte(": keepalive\n\n")); err != nil {
				return err
			}
			return rc.Flush()
		},
		gap: func(from, to int64) error {
			if err := ev.flush(); err != nil {
				return err
			}
			b, _ := json.Marshal(gapEventJSON{from, to})
			_, err := fmt.Fprintf(w, "event: gap\ndata: %s\n\n", b)
			return err
		},
	})
	if !end.done || ev.flush() != nil {
		return
	}
	var sess agentrpc.Session
	_, err := s.call(r, u, backend.Repeatable, 0, func(ctx context.Context, c *agentrpc.Client) (err error) {
		sess, err = c.Session(ctx, r.PathValue("id"))
		return err
	})
	if err == nil {
		b, _ := json.Marshal(sessionOf(sess))
		fmt.Fprintf(w, "id: %d\nevent: end\ndata: %s\n\n", end.next, b)
		rc.Flush()
	}
}

// sseOutput writes output events, holding back an incomplete UTF-8
// sequence at the end of a chunk until the next chunk completes it.
type sseOutput struct {
	w       io.Writer
	held    []byte
	heldOff int64
}

// send writes the bytes from offset; final says no more will follow.
func (e *sseOutput) send(offset int64, data []byte, final bool) error {
	if len(e.held) > 0 {
		if e.heldOff+int64(len(e.held)) == offset {
			data = append(e.held, data...)
			offset = e.heldOff
			e.held = nil
		} else if err := e.flush(); err != nil {
			return err
		}
	}
	if !final {
		if cut := incompleteTail(data); cut < len(data) {
			e.held = append([]byte(nil), data[cut:]...)
			e.heldOff = offset + int64(cut)
			data = data[:cut]
		}
	}
	return e.event(offset, data)
}

// flush sends the held back bytes.
func (e *sseOutput) flush() error {
	data, off := e.held, e.heldOff
	e.held = nil
	return e.event(off, data)
}

func (e *sseOutput) event(offset int64, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	ev := outputEventJSON{Offset: offset, Next: offset + int64(len(data))}
	if utf8.Valid(data) {
		ev.Data = string(data)
	} else {
		ev.DataB64 = base64.StdEncoding.EncodeToString(data)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.w, "id: %d\nevent: output\ndata: %s\n\n", ev.Next, b)
	return err
}

// incompleteTail returns where an incomplete UTF-8 sequence at the end of
// b starts (one that more bytes could complete), or len(b).
func incompleteTail(b []byte) int {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax+1; i-- {
		switch c := b[i]; {
		case c < utf8.RuneSelf:
			return len(b)
		case utf8.RuneStart(c):
			if !utf8.FullRune(b[i:]) {
				return i
			}
			return len(b)
		}
	}
	return len(b)
}
