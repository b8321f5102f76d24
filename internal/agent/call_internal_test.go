package agent

import (
	"errors"
	"testing"

	"octo/internal/agentrpc"
	"octo/internal/peercred"
)

// TestCallDo checks the wrapper every RPC method runs in: no identity, no
// call; the body's error keeps its code across the wire; the call is
// counted in flight only while it runs.
func TestCallDo(t *testing.T) {
	s := &Server{}
	cred := peercred.Cred{PID: 1, UID: 1000, GID: 1000}
	tests := []struct {
		name     string
		cred     *peercred.Cred
		bodyErr  error
		wantRun  bool
		wantCode agentrpc.Code
	}{
		{"no identity", nil, nil, false, agentrpc.CodePermission},
		{"ok", &cred, nil, true, ""},
		{"coded error", &cred, errorf(agentrpc.CodeNotFound, "x"), true, agentrpc.CodeNotFound},
		{"plain error", &cred, errors.New("boom"), true, agentrpc.CodeInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &call{s: s, cred: tt.cred}
			ran := false
			err := c.do(func() error {
				ran = true
				if got := s.inflight.Load(); got != 1 {
					t.Errorf("in flight during the call = %d, want 1", got)
				}
				return tt.bodyErr
			})
			if ran != tt.wantRun {
				t.Errorf("body ran = %v, want %v", ran, tt.wantRun)
			}
			if got := agentrpc.CodeOf(agentrpc.Decode(err)); got != tt.wantCode {
				t.Errorf("code after the wire = %q, want %q (err %v)", got, tt.wantCode, err)
			}
			if got := s.inflight.Load(); got != 0 {
				t.Errorf("in flight after the call = %d, want 0", got)
			}
		})
	}
}
