#!/usr/bin/env bash
# Compare large file transfers through octo with nginx on the same
# directory, on the same machine, with the same client (curl), in one run:
#
#   GET  a SIZE file (default 1 GiB): octo serves it from the descriptor its
#        agent passed (sendfile); nginx from its own open (sendfile on).
#   PUT  a SIZE file: octo streams the body into the agent's temporary file
#        and fsyncs it before answering; nginx's WebDAV PUT does not sync,
#        so its time includes a `sync -f` of the written file.
#
# Both octo arrangements are measured: dev (octo dev, in-process agent) and
# split (octo serve + octo-agent, as systemd runs them). For each transfer
# octo's peak resident memory is reported: VmHWM of its processes, reset
# (clear_refs 5) before the transfer, minus VmRSS before it.
#
# Needs: go, nginx with the dav module (nginx-light), curl. Installs nothing.
# Usage: bench/files-compare.sh [SIZE_MIB] [ROUNDS]   (default 1024 3)
# Targets (issue 10): GET >= 0.9x nginx, PUT >= 0.8x nginx+sync, peak RSS
# <= +64 MiB. A shared machine is noisy: look at every round.
set -euo pipefail
size_mib=${1:-1024}
rounds=${2:-3}
for tool in go nginx curl; do
	command -v "$tool" >/dev/null || { echo "bench: needs $tool (apt-get install -y nginx-light curl)" >&2; exit 2; }
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
mkdir -p "$tmp/www" "$tmp/src"
head -c "${size_mib}M" /dev/urandom >"$tmp/src/big.bin"
cp "$tmp/src/big.bin" "$tmp/www/big.bin"
chmod -R a+rwX "$tmp/www"

go build -o "$tmp/octo" ./octo
go build -o "$tmp/octo-agent" ./octo-agent

nport=18090 dport=18091 sport=18092
cat >"$tmp/nginx.conf" <<CONF
worker_processes auto;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log;
$( [ "$(id -u)" = 0 ] && echo "user root;" )
events { worker_connections 1024; }
http {
	access_log off;
	sendfile on;
	client_max_body_size 0;
	client_body_temp_path $tmp/www/.nginx-tmp; proxy_temp_path $tmp/pt; fastcgi_temp_path $tmp/ft;
	uwsgi_temp_path $tmp/ut; scgi_temp_path $tmp/st;
	server { listen 127.0.0.1:$nport; root $tmp/www; dav_methods PUT; create_full_put_path on; }
}
CONF
nginx -c "$tmp/nginx.conf"

"$tmp/octo" dev --listen 127.0.0.1:$dport --workspace "$tmp/www" --token-file "$tmp/dev.token" >"$tmp/dev.out" 2>"$tmp/dev.err" &
pids+=($!)
dpid=$!

me=$(id -un)
cat >"$tmp/octo.toml" <<CONF
[server]
listen = "127.0.0.1:$sport"
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

# peak_reset PIDS...: reset the peak RSS; prints the current RSS sum (KiB).
peak_reset() { local s=0 p; for p in "$@"; do echo 5 >"/proc/$p/clear_refs"; s=$((s + $(awk '/VmRSS/ {print $2}' "/proc/$p/status"))); done; echo "$s"; }
# peak PIDS...: the peak RSS sum (KiB) since the reset.
peak() { local s=0 p; for p in "$@"; do s=$((s + $(awk '/VmHWM/ {print $2}' "/proc/$p/status"))); done; echo "$s"; }

# get URL TOKEN: prints MB/s of one GET.
get() {
	local h=()
	[ -n "$2" ] && h=(-H "Authorization: Bearer $2")
	curl -fs "${h[@]}" -o /dev/null -w '%{speed_download}\n' "$1" | awk '{printf "%.0f\n", $1/1e6}'
}
# put URL TOKEN FILE_TO_SYNC: prints MB/s of one PUT (and its sync, if a file is given).
put() {
	local h=() t0 t1
	[ -n "$2" ] && h=(-H "Authorization: Bearer $2")
	t0=$(date +%s.%N)
	curl -fs "${h[@]}" -o /dev/null -T "$tmp/src/big.bin" "$1"
	[ -n "$3" ] && sync -f "$3"
	t1=$(date +%s.%N)
	awk -v s="$size_mib" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f\n", s*1048576/(b-a)/1e6 }'
}
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# All must serve the same bytes.
cmp <(curl -fs "http://127.0.0.1:$nport/big.bin") "$tmp/src/big.bin"
cmp <(curl -fs -H "Authorization: Bearer $dtoken" "http://127.0.0.1:$dport/api/v1/files/big.bin") "$tmp/src/big.bin"
cmp <(curl -fs -H "Authorization: Bearer $stoken" "http://127.0.0.1:$sport/api/v1/files/big.bin") "$tmp/src/big.bin"

echo "$(nproc) CPUs, ${size_mib} MiB file, $rounds rounds, MB/s (10^6 bytes)"
for op in GET PUT; do
	ns=() ds=() ss=() dmem=0 smem=0
	for r in $(seq "$rounds"); do
		if [ $op = GET ]; then
			n=$(get "http://127.0.0.1:$nport/big.bin" "")
			b=$(peak_reset $dpid); d=$(get "http://127.0.0.1:$dport/api/v1/files/big.bin" "$dtoken"); dm=$(( ($(peak $dpid) - b) / 1024 ))
			b=$(peak_reset $spid $apid); s=$(get "http://127.0.0.1:$sport/api/v1/files/big.bin" "$stoken"); sm=$(( ($(peak $spid $apid) - b) / 1024 ))
		else
			n=$(put "http://127.0.0.1:$nport/put-nginx.bin" "" "$tmp/www/put-nginx.bin")
			b=$(peak_reset $dpid); d=$(put "http://127.0.0.1:$dport/api/v1/files/put-dev.bin" "$dtoken" ""); dm=$(( ($(peak $dpid) - b) / 1024 ))
			b=$(peak_reset $spid $apid); s=$(put "http://127.0.0.1:$sport/api/v1/files/put-split.bin" "$stoken" ""); sm=$(( ($(peak $spid $apid) - b) / 1024 ))
			cmp "$tmp/www/put-dev.bin" "$tmp/src/big.bin" && cmp "$tmp/www/put-split.bin" "$tmp/src/big.bin"
		fi
		ns+=("$n") ds+=("$d") ss+=("$s")
		dmem=$((dm > dmem ? dm : dmem)) smem=$((sm > smem ? sm : smem))
		awk -v op=$op -v r="$r" -v n="$n" -v d="$d" -v s="$s" -v dm="$dm" -v sm="$sm" \
			'BEGIN { printf "%s round %d: nginx %5.0f | dev %5.0f %.2f, peak RSS +%d MiB | split %5.0f %.2f, peak RSS +%d MiB\n", op, r, n, d, d/n, dm, s, s/n, sm }'
	done
	nm=$(median "${ns[@]}") dm=$(median "${ds[@]}") sm=$(median "${ss[@]}")
	target=0.9
	[ $op = PUT ] && target=0.8
	awk -v op=$op -v n="$nm" -v d="$dm" -v s="$sm" -v t=$target -v dmem=$dmem -v smem=$smem \
		'BEGIN { printf "%s median: nginx %.0f MB/s; dev %.0f MB/s, %.2f of nginx; split %.0f MB/s, %.2f of nginx (target >= %s); peak RSS rise: dev %d MiB, split %d MiB (target <= 64)\n", op, n, d, d/n, s, s/n, t, dmem, smem }'
done
