package api

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// A caller with max_requests_per_user requests in flight (here three
// output streams that never end) gets 429 for the next, any route, files
// included; another user is not affected; a finished request frees its
// slot.
func TestRequestsPerUserCap(t *testing.T) {
	h := newHarness(t)
	h.srv.requests = newPerUser(3)
	h.srv.streams = newPerUser(10)
	s := h.startSession(h.tokMe, `{"command":["sleep","60"]}`)
	defer h.do("DELETE", "/api/v1/sessions/"+s.ID+"?grace=0s", h.tokMe, nil)
	var open []*http.Response
	for range 3 {
		req, _ := http.NewRequest("GET", h.url+"/api/v1/sessions/"+s.ID+"/output?follow=1", nil)
		req.Header.Set("Authorization", "Bearer "+h.tokMe)
		resp, err := h.client.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("stream: %v %v", resp, err)
		}
		open = append(open, resp)
	}
	for _, path := range []string{"/api/v1/status", "/api/v1/files/x.txt"} {
		resp, b := h.do("GET", path, h.tokMe, nil)
		want(t, "GET "+path+" with 3 requests in flight", resp, b, 429, "limit")
		if !strings.Contains(string(b), "max_requests_per_user") {
			t.Errorf("429 body %s does not name server.max_requests_per_user", b)
		}
	}
	resp, b := h.do("GET", "/api/v1/status", h.tokOther, nil)
	want(t, "another user's status meanwhile", resp, b, 200, "")

	open[0].Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, b := h.do("GET", "/api/v1/status", h.tokMe, nil)
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after closing a stream, status still %d %s", resp.StatusCode, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, r := range open[1:] {
		r.Body.Close()
	}
	if !strings.Contains(h.log.String(), "max_requests_per_user") {
		t.Errorf("the refusals were not logged:\n%s", h.log)
	}
}
