#!/usr/bin/env bash
# Compare a 1 KiB file GET through octo with nginx serving the same file, on
# the same machine, with the same load generator (wrk), in one run.
#
# Two octo arrangements are measured:
#   dev    octo dev: the control plane and an in-process agent, over the
#          agent's Unix socket (the README's first command)
#   split  octo serve and octo-agent as separate processes, as systemd runs
#          them (octo.service and octo-agent@USER.service)
# against nginx with one worker per CPU and no access log (its fastest setup).
#
# Needs: go, nginx, wrk (apt-get install -y nginx wrk). Installs nothing.
# Usage: bench/nginx-compare.sh [DURATION] [CONNECTIONS,...] [ROUNDS]
#        (default 5s 32,128 5)
# For each number of connections the servers are measured in turn, ROUNDS
# times; the ratio of the medians is reported (a shared machine is noisy:
# look at every round). Each round also shows each server's CPU time per
# request (nginx: its workers; octo: its processes), which other load on the
# machine disturbs less than requests/s. The last line compares capacities:
# each server's best median over the levels, the most requests/s it sustains
# here (give levels up to saturation, e.g. 32,64,128,256).
set -euo pipefail
dur=${1:-5s}
levels=${2:-32,128}
rounds=${3:-5}
for tool in go nginx wrk; do
	command -v "$tool" >/dev/null || { echo "bench: needs $tool (apt-get install -y nginx wrk)" >&2; exit 2; }
done
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	[ -f "$tmp/nginx.pid" ] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null || true
	sleep 0.3
	rm -rf "$tmp"
}
trap cleanup EXIT
chmod 755 "$tmp"
mkdir -p "$tmp/www"
head -c 1024 /dev/urandom >"$tmp/www/1k.bin"
chmod -R a+rX "$tmp/www"

go build -o "$tmp/octo" ./octo
go build -o "$tmp/octo-agent" ./octo-agent

nport=18080 dport=18081 sport=18082
cat >"$tmp/nginx.conf" <<CONF
worker_processes auto;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log;
$( [ "$(id -u)" = 0 ] && echo "user root;" )
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path $tmp/cb; proxy_temp_path $tmp/pt; fastcgi_temp_path $tmp/ft;
	uwsgi_temp_path $tmp/ut; scgi_temp_path $tmp/st;
	server { listen 127.0.0.1:$nport; root $tmp/www; }
}
CONF
nginx -c "$tmp/nginx.conf"

# dev: one process. Both octos log no GETs, as nginx has access_log off.
OCTO_LOG_LEVEL=warn "$tmp/octo" dev --listen 127.0.0.1:$dport --workspace "$tmp/www" --token-file "$tmp/dev.token" >"$tmp/dev.out" 2>"$tmp/dev.err" &
pids+=($!)
dpid=$!

# split: the agent binds the user-agent socket itself; octo serves this
# user, listed by name (octo never serves its own user otherwise).
me=$(id -un)
cat >"$tmp/octo.toml" <<CONF
[server]
listen = "127.0.0.1:$sport"
access_log_reads = false
api_socket = ""
state_dir = "$tmp/octo-state"
[local]
socket_dir = "$tmp/no-system-agents"
user_socket = "$tmp/agent-{uid}.sock"
[users]
allow = ["$me"]
CONF
"$tmp/octo-agent" serve --socket "$tmp/agent-$(id -u).sock" --workspace "$tmp/www" --state-dir "$tmp/agent-state" --idle-timeout 0 2>"$tmp/agent.err" &
pids+=($!)
apid=$!
"$tmp/octo" token create "$me" --config "$tmp/octo.toml" 2>/dev/null | tail -1 >"$tmp/split.token"
"$tmp/octo" serve --config "$tmp/octo.toml" 2>"$tmp/serve.err" &
pids+=($!)
spid=$!

for _ in $(seq 100); do
	[ -s "$tmp/dev.token" ] && curl -fs "http://127.0.0.1:$dport/healthz" >/dev/null &&
		curl -fs "http://127.0.0.1:$sport/healthz" >/dev/null && break
	sleep 0.1
done
dtoken=$(cat "$tmp/dev.token") stoken=$(cat "$tmp/split.token")

# All must serve the same bytes.
cmp <(curl -fs "http://127.0.0.1:$nport/1k.bin") "$tmp/www/1k.bin"
cmp <(curl -fs -H "Authorization: Bearer $dtoken" "http://127.0.0.1:$dport/api/v1/files/1k.bin") "$tmp/www/1k.bin"
cmp <(curl -fs -H "Authorization: Bearer $stoken" "http://127.0.0.1:$sport/api/v1/files/1k.bin") "$tmp/www/1k.bin"

rps() { awk '/Requests\/sec/ {print $2}'; }
# CPU time (clock ticks) used so far by the given processes.
ticks() { local s=0 p; for p in "$@"; do s=$((s + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo "$s"; }
hz=$(getconf CLK_TCK)
npids=$(pgrep -P "$(cat "$tmp/nginx.pid")" | tr '\n' ' ')
# measure URL TOKEN CONNS PIDS...: one wrk run; prints "req/s us-CPU-per-req".
measure() {
	local url=$1 token=$2 conns=$3; shift 3
	local t0 t1 r
	t0=$(ticks "$@")
	if [ -n "$token" ]; then
		r=$(wrk -t2 -c"$conns" -d"$dur" -H "Authorization: Bearer $token" "$url" | rps)
	else
		r=$(wrk -t2 -c"$conns" -d"$dur" "$url" | rps)
	fi
	t1=$(ticks "$@")
	awk -v r="$r" -v t=$((t1 - t0)) -v hz="$hz" -v d="${dur%s}" 'BEGIN { printf "%.0f %.1f\n", r, t/hz/(r*d)*1e6 }'
}
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "wrk -t2 -d$dur, $rounds rounds per level, $(nproc) CPUs, 1 KiB file"
nbest=0 dbest=0 sbest=0
max() { awk -v a="$1" -v b="$2" 'BEGIN { print (a > b ? a : b) }'; }
for conns in ${levels//,/ }; do
	echo "-- $conns connections"
	ns=() ds=() ss=()
	for r in $(seq "$rounds"); do
		read -r n nc < <(measure "http://127.0.0.1:$nport/1k.bin" "" "$conns" $npids)
		read -r d dc < <(measure "http://127.0.0.1:$dport/api/v1/files/1k.bin" "$dtoken" "$conns" "$dpid")
		read -r s sc < <(measure "http://127.0.0.1:$sport/api/v1/files/1k.bin" "$stoken" "$conns" "$spid" "$apid")
		ns+=("$n") ds+=("$d") ss+=("$s")
		awk -v r="$r" -v n="$n" -v nc="$nc" -v d="$d" -v dc="$dc" -v s="$s" -v sc="$sc" \
			'BEGIN { printf "round %d: nginx %6.0f req/s %5.1f us/req | dev %6.0f req/s %5.1f us/req %.2f | split %6.0f req/s %5.1f us/req %.2f\n", r, n, nc, d, dc, d/n, s, sc, s/n }'
	done
	nm=$(median "${ns[@]}") dm=$(median "${ds[@]}") sm=$(median "${ss[@]}")
	nbest=$(max "$nbest" "$nm") dbest=$(max "$dbest" "$dm") sbest=$(max "$sbest" "$sm")
	awk -v n="$nm" -v d="$dm" -v s="$sm" -v c="$conns" \
		'BEGIN { printf "median at %d connections: nginx %.0f req/s; dev %.0f req/s, %.2f of nginx; split %.0f req/s, %.2f of nginx (target >= 0.50)\n", c, n, d, d/n, s, s/n }'
done
awk -v n="$nbest" -v d="$dbest" -v s="$sbest" -v l="$levels" \
	'BEGIN { printf "capacity (best median over %s connections): nginx %.0f req/s; dev %.0f req/s, %.2f of nginx; split %.0f req/s, %.2f of nginx\n", l, n, d, d/n, s, s/n }'
