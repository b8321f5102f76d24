package logging

import (
	"log/slog"
	"testing"
)

func TestLevelFrom(t *testing.T) {
	for in, want := range map[string]slog.Level{
		"": slog.LevelInfo, "debug": slog.LevelDebug, "DEBUG": slog.LevelDebug, "warn": slog.LevelWarn,
		"error": slog.LevelError, "loud": slog.LevelInfo,
	} {
		if got := levelFrom(in); got != want {
			t.Errorf("levelFrom(%q) = %v, want %v", in, got, want)
		}
	}
}
