//go:build linux

package e2e

import (
	"context"
	"net/http"
	"testing"

	"octo/internal/agentslice"
)

// The installed generator spreads the enabled users' agents over
// agentslice.Groups slices inside system-octo\x2dagent.slice: set before any
// agent starts, for a user enabled later as soon as systemctl enable
// returns, and an operator's own drop-in still wins.
func TestAgentsSpreadOverSlices(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	for _, u := range servedUsers {
		if got, want := unitProp(t, b, "octo-agent@"+u+".service", "Slice"), agentslice.Of(u); got != want {
			t.Errorf("octo-agent@%s.service is in %q, want %q", u, got, want)
		}
		// The socket wants the slice, so it exists before the first request.
		if got := isActive(ctx, b, agentslice.Of(u)); got != "active" {
			t.Errorf("%s's slice %s is %q, want active with the socket", u, agentslice.Of(u), got)
		}
	}
	// carol's agent, started by her first request, runs in that slice's
	// cgroup, nested in the agents' common slice (which limits all of them
	// together if an operator sets limits on it).
	c := newClient(t, b, "carol")
	c.expect("GET", "/api/v1/status", nil, http.StatusOK, nil)
	want := "/system.slice/" + agentslice.Parent + "/" + agentslice.Of("carol") + "/octo-agent@carol.service"
	if got := unitProp(t, b, "octo-agent@carol.service", "ControlGroup"); got != want {
		t.Errorf("carol's agent runs in cgroup %q, want %q", got, want)
	}

	// A user enabled later: systemctl enable reloads, the generator runs.
	const late = "slicetest"
	if out, err := b.Sh(ctx, "useradd -m -U -s /bin/sh "+late+" && systemctl enable --now octo-agent@"+late+".socket"); err != nil {
		t.Fatalf("enable a new user: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		b.Sh(ctx, "systemctl disable --now octo-agent@"+late+".socket; rm -rf /etc/systemd/system/octo-agent@"+late+".service.d; systemctl daemon-reload; userdel -r "+late)
	})
	unit := "octo-agent@" + late + ".service"
	if got, want := unitProp(t, b, unit, "Slice"), agentslice.Of(late); got != want {
		t.Errorf("after systemctl enable --now, %s is in %q, want %q", unit, got, want)
	}
	// An operator's drop-in (systemctl edit writes override.conf) wins.
	if out, err := b.Sh(ctx, "mkdir -p /etc/systemd/system/"+unit+".d && printf '[Service]\\nSlice=custom.slice\\n' > /etc/systemd/system/"+unit+".d/override.conf && systemctl daemon-reload"); err != nil {
		t.Fatalf("write an override: %v\n%s", err, out)
	}
	if got := unitProp(t, b, unit, "Slice"); got != "custom.slice" {
		t.Errorf("with an override.conf saying Slice=custom.slice, %s is in %q", unit, got)
	}
}
