package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Output headers and trailers of GET /api/v1/sessions/{id}/output.
const (
	HeaderOffset = "Octo-Output-Offset" // where the body's bytes start
	HeaderNext   = "Octo-Next-Offset"   // where the next read starts
	HeaderDone   = "Octo-Output-Done"   // the session ended and nothing more will come
	HeaderResume = "Octo-Output-Resume" // a follow stream ended at a gap: kept output resumes here
)

// Chunk is a piece of a session's output.
type Chunk struct {
	Data   []byte
	Offset int64 // where Data starts (past the requested offset if older output was dropped)
	Next   int64 // where to read next
	Done   bool  // the session ended and Next is the end of its output
}

// Output reads what output there is from offset, one chunk (at most 1 MiB).
func (c *Client) Output(ctx context.Context, id string, offset int64) (Chunk, error) {
	req, err := c.newRequest(ctx, http.MethodGet, sessionPath(id, "/output"), url.Values{"offset": {strconv.FormatInt(offset, 10)}}, nil)
	if err != nil {
		return Chunk{}, err
	}
	resp, err := c.send(req)
	if err != nil {
		return Chunk{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return Chunk{}, fmt.Errorf("read output: %w", err)
	}
	ch := Chunk{Data: data}
	ch.Offset, err = headerInt(resp.Header, HeaderOffset)
	if err == nil {
		ch.Next, err = headerInt(resp.Header, HeaderNext)
	}
	if err != nil {
		return Chunk{}, err
	}
	ch.Done = resp.Header.Get(HeaderDone) == "true"
	if ch.Next != ch.Offset+int64(len(data)) {
		return Chunk{}, fmt.Errorf("output chunk from %d to %d carries %d bytes", ch.Offset, ch.Next, len(data))
	}
	return ch, nil
}

func headerInt(h http.Header, key string) (int64, error) {
	n, err := strconv.ParseInt(h.Get(key), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("server sent %s %q, not an offset", key, h.Get(key))
	}
	return n, nil
}

// Stream is a raw follow stream of a session's output: its bytes are
// exactly the output from Offset to Next.
type Stream struct {
	Offset int64 // where the stream's bytes start
	resp   *http.Response
	n      int64
	err    error
}

// Follow opens a raw follow stream from offset: output bytes as they come,
// until the session ends, the reader falls behind what the agent keeps, or
// ctx ends.
func (c *Client) Follow(ctx context.Context, id string, offset int64) (*Stream, error) {
	q := url.Values{"follow": {"1"}, "offset": {strconv.FormatInt(offset, 10)}}
	req, err := c.newRequest(ctx, http.MethodGet, sessionPath(id, "/output"), q, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	start, err := headerInt(resp.Header, HeaderOffset)
	if err != nil {
		resp.Body.Close()
		return nil, err
	}
	return &Stream{Offset: start, resp: resp}, nil
}

func (s *Stream) Read(p []byte) (int, error) {
	n, err := s.resp.Body.Read(p)
	s.n += int64(n)
	return n, err
}

// Close ends the stream.
func (s *Stream) Close() error { return s.resp.Body.Close() }

// End says, after Read returned io.EOF, where the stream ended (next),
// whether the session is done, and, if the stream ended because output
// past next was dropped before it was read, where kept output resumes.
func (s *Stream) End() (next int64, done bool, resume int64, err error) {
	t := s.resp.Trailer
	if t.Get(HeaderNext) == "" {
		return s.Offset + s.n, false, 0, fmt.Errorf("output stream ended without its %s trailer (the connection broke)", HeaderNext)
	}
	if next, err = headerInt(t, HeaderNext); err != nil {
		return 0, false, 0, err
	}
	if next != s.Offset+s.n {
		return 0, false, 0, fmt.Errorf("output stream from %d carried %d bytes but says it ends at %d", s.Offset, s.n, next)
	}
	if r := t.Get(HeaderResume); r != "" {
		if resume, err = headerInt(t, HeaderResume); err != nil {
			return 0, false, 0, err
		}
	}
	return next, t.Get(HeaderDone) == "true", resume, nil
}

// Gap is a stretch of output dropped before it was read.
type Gap struct{ From, To int64 }

// CopyOutput writes a session's output from offset to w: what there is, or
// with follow everything until the session ends. Output dropped before it
// was read (older than the agent keeps) is skipped and reported to onGap.
// It returns the offset after the last byte written.
func (c *Client) CopyOutput(ctx context.Context, id string, offset int64, w io.Writer, follow bool, onGap func(Gap)) (int64, error) {
	if !follow {
		for {
			ch, err := c.Output(ctx, id, offset)
			if err != nil {
				return offset, err
			}
			if ch.Offset > offset && onGap != nil {
				onGap(Gap{offset, ch.Offset})
			}
			if _, err := w.Write(ch.Data); err != nil {
				return offset, err
			}
			offset = ch.Next
			if ch.Done || len(ch.Data) == 0 {
				return offset, nil
			}
		}
	}
	for {
		st, err := c.Follow(ctx, id, offset)
		if err != nil {
			return offset, err
		}
		if st.Offset > offset && onGap != nil {
			onGap(Gap{offset, st.Offset})
		}
		_, err = io.Copy(w, st)
		st.Close()
		if err != nil {
			return st.Offset + st.n, err
		}
		next, done, resume, err := st.End()
		if err != nil {
			return st.Offset + st.n, err
		}
		progress := next > offset
		offset = next
		switch {
		case done:
			return offset, nil
		case resume > offset:
			if onGap != nil {
				onGap(Gap{offset, resume})
			}
			offset = resume
		case !progress: // the server ended the stream early with nothing: do not spin
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
		if err := ctx.Err(); err != nil {
			return offset, err
		}
	}
}
