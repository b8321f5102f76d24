//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"octo/internal/agentslice"
)

// The installed generator spreads the enabled users' agents over
// agentslice.Groups slices inside system-octo\x2dagent.slice: set before any
// agent starts; for a user enabled later, as soon as systemctl enable
// returns, without disturbing an agent already running; and an operator's
// own drop-in still wins.
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

	// A user whose agent already runs when the generator first places it
	// (an upgrade from an octo without it, or a socket started before it
	// was enabled): the agent serves on in the slice it started in, and
	// starts in its own slice next time. systemctl enable reloads, so the
	// generator runs before enable returns.
	const late = "slicetest"
	unit, sock := "octo-agent@"+late+".service", "/run/octo/agent-"+late+".sock"
	if out, err := b.Sh(ctx, "useradd -m -U -s /bin/sh "+late+" && systemctl start "+unit); err != nil {
		t.Fatalf("start a new user's agent: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		b.Sh(ctx, "systemctl disable --now octo-agent@"+late+".socket; systemctl stop "+unit+"; rm -rf /etc/systemd/system/"+unit+".d; systemctl daemon-reload; userdel -r "+late)
	})
	before := unitProp(t, b, unit, "ControlGroup")
	if want := "/system.slice/" + agentslice.Parent + "/" + unit; before != want {
		t.Errorf("before it is enabled, %s runs in %q, want %q", unit, before, want)
	}
	if out, err := b.Run(ctx, "systemctl", "enable", "octo-agent@"+late+".socket"); err != nil {
		t.Fatalf("enable: %v\n%s", err, out)
	}
	if got, want := unitProp(t, b, unit, "Slice"), agentslice.Of(late); got != want {
		t.Errorf("after systemctl enable, %s is in %q, want %q", unit, got, want)
	}
	if res := agentInfoAs(t, late, sock); res.Error != "" || res.Info == nil || fmt.Sprint(res.Info.PID) != unitProp(t, b, unit, "MainPID") {
		t.Errorf("after the reload, the running agent answers %+v, want its Info", res)
	}
	if out, err := b.Run(ctx, "systemctl", "restart", unit); err != nil {
		t.Fatalf("restart: %v\n%s", err, out)
	}
	if got, want := unitProp(t, b, unit, "ControlGroup"), "/system.slice/"+agentslice.Parent+"/"+agentslice.Of(late)+"/"+unit; got != want {
		t.Errorf("restarted, %s runs in %q, want %q", unit, got, want)
	}
	if res := agentInfoAs(t, late, sock); res.Error != "" || res.Info == nil {
		t.Errorf("restarted in its slice, the agent answers %+v, want its Info", res)
	}
	// An operator's drop-in (systemctl edit writes override.conf) wins.
	if out, err := b.Sh(ctx, "mkdir -p /etc/systemd/system/"+unit+".d && printf '[Service]\\nSlice=custom.slice\\n' > /etc/systemd/system/"+unit+".d/override.conf && systemctl daemon-reload"); err != nil {
		t.Fatalf("write an override: %v\n%s", err, out)
	}
	if got := unitProp(t, b, unit, "Slice"); got != "custom.slice" {
		t.Errorf("with an override.conf saying Slice=custom.slice, %s is in %q", unit, got)
	}
}
