#!/usr/bin/env bash
# Compare a 1 KiB file GET through octo (octo dev: control plane + in-process
# agent over its Unix socket) with nginx serving the same file, on the same
# machine, with the same load generator (wrk), in one run.
#
# Needs: go, nginx, wrk (apt-get install -y nginx wrk). Installs nothing.
# Usage: bench/nginx-compare.sh [DURATION] [CONNECTIONS] [ROUNDS]  (default 5s 32 5)
# The two servers are measured alternately, ROUNDS times each; the ratio of
# the medians is reported (a shared machine is noisy: look at every round).
# Each round also shows each server's CPU time per request (nginx: its
# workers; octo: the one dev process, agent included), which other load on
# the machine disturbs less than requests/s.
set -euo pipefail
dur=${1:-5s}
conns=${2:-32}
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

nport=18080 oport=18081
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

"$tmp/octo" dev --listen 127.0.0.1:$oport --workspace "$tmp/www" --token-file "$tmp/token" >"$tmp/octo.out" 2>"$tmp/octo.err" &
pids+=($!)
for _ in $(seq 100); do [ -s "$tmp/token" ] && curl -fs "http://127.0.0.1:$oport/healthz" >/dev/null && break; sleep 0.1; done
token=$(cat "$tmp/token")

# Both must serve the same bytes.
cmp <(curl -fs "http://127.0.0.1:$nport/1k.bin") "$tmp/www/1k.bin"
cmp <(curl -fs -H "Authorization: Bearer $token" "http://127.0.0.1:$oport/api/v1/files/1k.bin") "$tmp/www/1k.bin"

rps() { awk '/Requests\/sec/ {print $2}'; }
# CPU time (clock ticks) used so far by the given processes: on a shared,
# noisy machine the servers' CPU per request is steadier than requests/s.
ticks() { local s=0 p; for p in "$@"; do s=$((s + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo "$s"; }
hz=$(getconf CLK_TCK)
npids=$(pgrep -P "$(cat "$tmp/nginx.pid")" | tr '\n' ' ')
opid=${pids[0]}
echo "wrk -t2 -c$conns -d$dur, $rounds rounds, $(nproc) CPUs, 1 KiB file"
ns=() os=()
for r in $(seq "$rounds"); do
	t0=$(ticks $npids)
	n=$(wrk -t2 -c"$conns" -d"$dur" "http://127.0.0.1:$nport/1k.bin" | rps)
	t1=$(ticks $npids)
	u0=$(ticks "$opid")
	o=$(wrk -t2 -c"$conns" -d"$dur" -H "Authorization: Bearer $token" "http://127.0.0.1:$oport/api/v1/files/1k.bin" | rps)
	u1=$(ticks "$opid")
	ns+=("$n") os+=("$o")
	awk -v r="$r" -v n="$n" -v o="$o" -v nt=$((t1 - t0)) -v ot=$((u1 - u0)) -v hz="$hz" -v d="${dur%s}" \
		'BEGIN { printf "round %d: nginx %8.0f req/s %5.1f us CPU/req  octo %8.0f req/s %5.1f us CPU/req  ratio %.2f\n", r, n, nt/hz/(n*d)*1e6, o, ot/hz/(o*d)*1e6, o/n }'
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
nm=$(median "${ns[@]}") om=$(median "${os[@]}")
awk -v n="$nm" -v o="$om" 'BEGIN { printf "median: nginx %.0f req/s, octo %.0f req/s, octo/nginx = %.2f (target >= 0.50)\n", n, o, o/n; exit (o/n >= 0.5 ? 0 : 1) }'
