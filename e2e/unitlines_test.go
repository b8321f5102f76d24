package e2e

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// TestUnitLines: the benchmarks' floors copy the agent unit's sandbox and
// limits from the unit itself, comments left out, so they follow it.
func TestUnitLines(t *testing.T) {
	b, err := os.ReadFile("../units/system/octo-agent@.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	limits := unitLines(unit, "TasksMax=", "IOWeight=")
	want := []string{"TasksMax=4096", "MemoryHigh=20%", "MemoryMax=25%", "MemorySwapMax=0", "OOMPolicy=continue", "CPUWeight=100", "IOWeight=100"}
	if !slices.Equal(limits, want) {
		t.Errorf("limit lines = %q, want %q", limits, want)
	}
	sandbox := unitLines(unit, "NoNewPrivileges=", "SystemCallFilter=")
	if len(sandbox) < 10 || sandbox[0] != "NoNewPrivileges=yes" || !strings.HasPrefix(sandbox[len(sandbox)-1], "SystemCallFilter=") {
		t.Errorf("sandbox lines = %q, want NoNewPrivileges=yes through SystemCallFilter=", sandbox)
	}
	for _, l := range append(sandbox, limits...) {
		if strings.HasPrefix(l, "#") || l == "" {
			t.Errorf("line %q copied, want only settings", l)
		}
	}
	if got := unitLines(unit, "IOWeight=", "TasksMax="); got != nil {
		t.Errorf("unitLines with last before first = %q, want nil", got)
	}
}
