package main

import (
	"log/slog"

	"octo/internal/backend"
	"octo/internal/config"
	"octo/internal/container"
)

// The container backend is built in: backend.mode container and auto run
// users' agents through the Docker Engine API (Podman or dockerd).
func init() { containerRuntime = newContainerRuntime }

func newContainerRuntime(cfg config.Container, log *slog.Logger) (backend.ContainerRuntime, error) {
	rt, err := container.New(cfg, log.With("backend", "container"))
	if err != nil {
		return nil, err
	}
	return rt, nil
}
