// Command floor is the activation floor of bench/coldstart.sh: the least a
// socket-activated Go HTTP service can do. systemd starts it on the first
// connection to its socket; it answers every request with "ok" and keeps
// running until stopped, as an agent does until it idles out. Under
// Type=notify it says READY=1 as it starts serving, as the agent does.
package main

import (
	"log"
	"net/http"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
)

func main() {
	lns, err := activation.Listeners()
	if err != nil || len(lns) != 1 {
		log.Fatalf("floor: want one socket from systemd, got %d (%v)", len(lns), err)
	}
	daemon.SdNotify(false, daemon.SdNotifyReady) // under Type=notify; a no-op otherwise
	log.Fatal(http.Serve(lns[0], http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})))
}
