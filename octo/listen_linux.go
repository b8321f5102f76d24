package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/coreos/go-systemd/v22/activation"

	"octo/internal/config"
	"octo/internal/unixsock"
)

// listeners returns the sockets systemd passed (by FileDescriptorName=:
// "http" for TCP, "api" for the Unix socket; unnamed ones by their type),
// and binds from the config those it did not pass.
func listeners(sc config.Server, log *slog.Logger) ([]namedListener, error) {
	inherited, err := activation.ListenersWithNames()
	if err != nil {
		return nil, fmt.Errorf("sockets from systemd: %w", err)
	}
	var out []namedListener
	have := map[string]bool{}
	for name, lns := range inherited {
		for _, ln := range lns {
			if ln == nil {
				continue
			}
			_, isUnix := ln.(*net.UnixListener)
			if name != "http" && name != "api" {
				n := "http"
				if isUnix {
					n = "api"
				}
				log.Info("inherited socket without a known FileDescriptorName; using it by type", "fd_name", name, "as", n)
				name = n
			}
			out = append(out, namedListener{name: name, ln: ln, unix: isUnix, inherited: true})
			have[name] = true
		}
	}
	if !have["http"] && sc.Listen != "" {
		ln, err := net.Listen("tcp", sc.Listen)
		if err != nil {
			return nil, fmt.Errorf("key server.listen: %w", err)
		}
		out = append(out, namedListener{name: "http", ln: ln})
	}
	if !have["api"] && sc.APISocket != "" {
		// Mode 0666: anyone may connect; callers are told apart by
		// their peer credentials. A live octo's socket is refused, not
		// taken over.
		ln, err := unixsock.Listen(sc.APISocket, 0o666)
		if err != nil {
			closeAll(out)
			return nil, fmt.Errorf("key server.api_socket: %w", err)
		}
		out = append(out, namedListener{name: "api", ln: ln, unix: true})
	}
	if len(out) == 0 {
		return nil, errors.New("nothing to listen on: set server.listen or server.api_socket, or start octo.socket")
	}
	return out, nil
}

func closeAll(lns []namedListener) {
	for _, nl := range lns {
		nl.ln.Close()
	}
}
