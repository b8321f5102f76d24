package agentrpc

import (
	"errors"
	"fmt"
	"testing"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	sentinels := []*Error{ErrNotFound, ErrExists, ErrPermission, ErrInvalid, ErrOutsideWorkspace, ErrTooLarge, ErrLimit, ErrInternal, ErrPrecondition, ErrNoSpace}
	for _, s := range sentinels {
		t.Run(string(s.Code), func(t *testing.T) {
			orig := fmt.Errorf("open a/b: %w", Errorf(s.Code, "no such file: a/b"))
			got := Decode(Encode(orig))
			if !errors.Is(got, s) {
				t.Errorf("Decode(Encode(%v)) = %v, does not match %s", orig, got, s.Code)
			}
			if got.Error() != orig.Error() {
				t.Errorf("message = %q, want %q", got.Error(), orig.Error())
			}
			for _, other := range sentinels {
				if other != s && errors.Is(got, other) {
					t.Errorf("%v also matches %s", got, other.Code)
				}
			}
		})
	}
}

func TestEncodeUncodedIsInternal(t *testing.T) {
	got := Decode(Encode(errors.New("boom")))
	if !errors.Is(got, ErrInternal) {
		t.Errorf("got %v, want internal", got)
	}
}

func TestDecodeForeignStringUnchanged(t *testing.T) {
	for _, s := range []string{"connection reset", "octo-agent:bogus:x", "octo-agent:nocolon"} {
		in := errors.New(s)
		if got := Decode(in); got != in {
			t.Errorf("Decode(%q) = %v, want it unchanged", s, got)
		}
	}
}
