package slurm

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSbatchArgs(t *testing.T) {
	args, err := SbatchArgs(Spec{LaunchID: "abc-1", Agent: "/usr/bin/octo-agent-dial", Partition: "p",
		Account: "acct", TimeLimit: 90 * time.Second, Extra: []string{"--mem=1G"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--parsable", "--job-name=octo-agent", "--dependency=singleton",
		"--comment=octo-launch:abc-1", "--no-requeue", "--partition=p", "--account=acct", "--time=2", "--mem=1G",
		"--wrap=exec /usr/bin/octo-agent-dial"} {
		if !slices.Contains(args, want) {
			t.Errorf("sbatch args %q lack %q", args, want)
		}
	}
	if args[len(args)-1] != "--wrap=exec /usr/bin/octo-agent-dial" {
		t.Errorf("last arg = %q, want the --wrap", args[len(args)-1])
	}
	if _, err := SbatchArgs(Spec{LaunchID: strings.Repeat("Az9_-", 12) + "abcd", Agent: "a"}); err != nil {
		t.Errorf("SbatchArgs(a 64-character launch id): %v", err)
	}
	for _, bad := range []string{"", "a b", "x;rm", strings.Repeat("a", 65), "ü", "a\n", "a/b"} {
		if _, err := SbatchArgs(Spec{LaunchID: bad, Agent: "a"}); err == nil {
			t.Errorf("SbatchArgs(launch %q) = nil error, want one", bad)
		}
	}
}

func TestParseJobID(t *testing.T) {
	for _, tc := range []struct {
		out, want string
		ok        bool
	}{{"42\n", "42", true}, {"42;octo\n", "42", true}, {"sbatch: warning: x\n43\n", "43", true}, {"", "", false}, {"sbatch: error", "", false}} {
		got, err := ParseJobID([]byte(tc.out))
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("ParseJobID(%q) = %q, %v; want %q, ok=%v", tc.out, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseQueue(t *testing.T) {
	out := "12|alice|RUNNING|h1|None|octo-launch:L1\n13|alice|PENDING||Dependency|octo-launch:L2|x\n14|bob|PENDING|(null)|Resources|other\n\n"
	got, err := ParseQueue([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := []Job{
		{ID: "12", User: "alice", State: "RUNNING", Node: "h1", Reason: "None", LaunchID: "L1"},
		{ID: "13", User: "alice", State: "PENDING", Reason: "Dependency", LaunchID: "L2|x"},
		{ID: "14", User: "bob", State: "PENDING", Reason: "Resources"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("ParseQueue = %+v\nwant %+v", got, want)
	}
	if _, err := ParseQueue([]byte("12|alice|RUNNING\n")); err == nil {
		t.Error("ParseQueue(short line) = nil error, want one")
	}
}

func TestParseUnmunge(t *testing.T) {
	for _, tc := range []struct {
		out  string
		want uint32
		ok   bool
	}{
		{"STATUS:          Success (0)\nENCODE_HOST:     ctl (10.99.1.1)\nUID:             alice (1001)\nGID:             alice (1001)\n", 1001, true},
		{"STATUS:          Replayed credential (17)\nUID:             alice (1001)\n", 0, false},
		{"STATUS:          Success (0)\n", 0, false},
	} {
		got, err := parseUnmunge([]byte(tc.out))
		if got != tc.want || (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrMunge)) {
			t.Errorf("parseUnmunge(%q) = %d, %v; want %d ok=%v", tc.out, got, err, tc.want, tc.ok)
		}
	}
}
