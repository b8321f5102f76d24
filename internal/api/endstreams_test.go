package api

import (
	"io"
	"net/http"
	"testing"
	"time"
)

// EndStreams (a stopping server's drain deadline) ends a follow stream of a
// session that is still running with a clean end of stream: the chunked
// body ends without error and the trailer says where to resume.
func TestEndStreamsEndsFollowCleanly(t *testing.T) {
	h := newHarness(t)
	s := h.startSession(h.tokMe, `{"command":["sh","-c","echo one; exec sleep 60"]}`)
	req, _ := http.NewRequest("GET", h.url+"/api/v1/sessions/"+s.ID+"/output?follow=1", nil)
	req.Header.Set("Authorization", "Bearer "+h.tokMe)
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, 4)
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "one\n" {
		t.Fatalf("first chunk %q, %v", first, err)
	}
	start := time.Now()
	h.srv.EndStreams()
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("after EndStreams the stream ended with %v, want a clean end", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("stream ended %v after EndStreams, want at once", d)
	}
	if len(rest) != 0 || resp.Trailer.Get(hdrNext) != "4" || resp.Trailer.Get(hdrDone) != "false" {
		t.Errorf("after EndStreams: rest %q, trailer %v; want nothing more, %s 4 and %s false", rest, resp.Trailer, hdrNext, hdrDone)
	}

	// SSE: the stream ends without an end event; the last id is the offset
	// to resume from with Last-Event-ID.
	events := h.sse(t, s.ID, "")
	if len(events) == 0 || events[len(events)-1].event != "output" || events[len(events)-1].id != "4" {
		t.Errorf("SSE after EndStreams: %+v, want output events ending at id 4 and no end event", events)
	}
}
