#!/usr/bin/env bash
# Compare a 1 KiB file GET through octo (octo dev: control plane + in-process
# agent over its Unix socket) with nginx serving the same file, on the same
# machine, with the same load generator (wrk), in one run.
#
# Needs: go, nginx, wrk (apt-get install -y nginx wrk). Installs nothing.
# Usage: bench/nginx-compare.sh [DURATION] [CONNECTIONS]   (default 10s 32)
set -euo pipefail
dur=${1:-10s}
conns=${2:-32}
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
echo "wrk -t2 -c$conns -d$dur, $(nproc) CPUs, 1 KiB file"
n1=$(wrk -t2 -c"$conns" -d"$dur" "http://127.0.0.1:$nport/1k.bin" | rps)
o1=$(wrk -t2 -c"$conns" -d"$dur" -H "Authorization: Bearer $token" "http://127.0.0.1:$oport/api/v1/files/1k.bin" | rps)
n2=$(wrk -t2 -c"$conns" -d"$dur" "http://127.0.0.1:$nport/1k.bin" | rps)
o2=$(wrk -t2 -c"$conns" -d"$dur" -H "Authorization: Bearer $token" "http://127.0.0.1:$oport/api/v1/files/1k.bin" | rps)
echo "nginx: $n1 $n2 req/s"
echo "octo:  $o1 $o2 req/s"
awk -v n="$n1 $n2" -v o="$o1 $o2" 'BEGIN { split(n, a); split(o, b); nm = (a[1]+a[2])/2; om = (b[1]+b[2])/2;
	printf "octo/nginx = %.2f (target >= 0.50)\n", om/nm; exit (om/nm >= 0.5 ? 0 : 1) }'
