#!/bin/sh
# The first request of the day: a user's cold request through octo against
# the activation floor (a trivial socket-activated Go service: bare, under
# the agent's sandboxing lines, and under those and its per-user limits),
# side by side in one booted systemd (the e2e
# box). Needs root and what .ci/setup-e2e.sh installs.
#
#   bench/coldstart.sh [USERS] [SMALL] [SINGLES] [ROUNDS]
#       USERS (default 1000) and SMALL (300) users' first requests, 8 at a
#       time, ROUNDS (2) times each, and one cold request for each of
#       SINGLES (24) users per arrangement; CPU per start by part (service,
#       octo, systemd, journald), idle agents' memory.
#   bench/coldstart.sh directives [STARTS]
#       what each sandboxing line of octo-agent@.service costs a start:
#       alone, and left out of the whole (STARTS, default 10, each).
set -eu
cd "$(dirname "$0")/.."
if [ "${1:-}" = directives ]; then
	export OCTO_BENCH_STARTS="${2:-10}"
	exec go test -run '^$' -bench '^BenchmarkSandboxDirectives$' -benchtime 1x -timeout 60m -v ./e2e
fi
export OCTO_BENCH_USERS="${1:-1000}" OCTO_BENCH_SMALL="${2:-300}" OCTO_BENCH_SINGLES="${3:-24}" OCTO_BENCH_ROUNDS="${4:-2}"
exec go test -run '^$' -bench '^BenchmarkColdStart$' -benchtime 1x -timeout 60m -v ./e2e
