#!/usr/bin/env bash
# The README's demo: builds agg, then runs agg-server and agg-client on
# loopback with three links and SOCKS5 (and HTTP CONNECT) on
# 127.0.0.1:1080, until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d build ] || meson setup build >/dev/null
ninja -C build >/dev/null
dir=$(mktemp -d /tmp/agg-demo.XXXXXX)
head -c 24 /dev/urandom | base64 > "$dir/secret"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT INT TERM
./build/proxy-server/agg-server -l tcp://127.0.0.1:5800 -l tcp://127.0.0.2:5800 \
	-l tcp://[::1]:5800 \
	-k "$dir/secret" -v --no-monitor &
pids+=($!)
./build/proxy-client/agg-client -D 127.0.0.1:1080 -k "$dir/secret" -v --no-monitor \
	tcp://127.0.0.1:5800 tcp://127.0.0.2:5800 tcp://[::1]:5800 &
pids+=($!)
cat <<MSG

agg demo: agg-server on loopback port 5800, agg-client with 3 links
(127.0.0.1, 127.0.0.2, ::1) and SOCKS5 + HTTP CONNECT on 127.0.0.1:1080.
Try, in another terminal:
  curl --socks5-hostname 127.0.0.1:1080 http://example.com/
  curl -p -x http://127.0.0.1:1080 https://example.com/
  chromium --proxy-server=socks5://127.0.0.1:1080
Ctrl-C stops both.

MSG
wait
