#!/usr/bin/env bash
# End-to-end on loopback: agg-server and agg-client (3 links) with real
# clients (curl through SOCKS5, SOCKS5 with local resolution, HTTP CONNECT,
# and a -L forward) downloading files of 0 B, 1 B and 64 MiB, compared byte
# for byte; SOCKS reply codes from real situations; 100 downloads at once;
# a wrong secret refused with its message. Usage: proxy_loopback.sh BUILDDIR
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_setup e2e "$1"

mkdir -p "$tmp/www"
: > "$tmp/www/empty"
printf 'x' > "$tmp/www/one"
head -c $((64 * 1024 * 1024)) /dev/urandom > "$tmp/www/big"
head -c 100000 /dev/urandom > "$tmp/www/small"
echo "correct horse battery staple" > "$tmp/secret"
echo "wrong" > "$tmp/wrong"

http_port=$(free_port)
server_port=$(free_port)
socks_port=$(free_port)
fwd_port=$(free_port)
hold_closed_port

# Its 100 parallel downloads need more than http.server's backlog of 5.
serve_http "$http_port" "$tmp/www" >"$tmp/http.log" 2>&1 &
pids+=($!)
"$server_bin" -l "tcp://[::]:$server_port" -k "$tmp/secret" \
	>"$tmp/server.log" 2>&1 &
pids+=($!)
wait_for curl -sf -o /dev/null "http://127.0.0.1:$http_port/one" ||
	fail "http server did not start"

# Three links: the same server reached at three loopback addresses.
"$client_bin" -D "127.0.0.1:$socks_port" \
	-L "127.0.0.1:$fwd_port:127.0.0.1:$http_port" -k "$tmp/secret" \
	"tcp://127.0.0.1:$server_port" "tcp://127.0.0.2:$server_port" \
	"tcp://[::1]:$server_port" >"$tmp/client.log" 2>&1 &
pids+=($!)
wait_for curl -sf -o /dev/null --socks5-hostname "127.0.0.1:$socks_port" \
	"http://127.0.0.1:$http_port/one" || {
	cat "$tmp/client.log" "$tmp/server.log" >&2
	fail "no stream through agg-client"
}

for f in empty one small big; do
	curl -sf --socks5-hostname "127.0.0.1:$socks_port" \
		"http://localhost:$http_port/$f" -o "$tmp/out" ||
		fail "socks5h $f"
	cmp -s "$tmp/out" "$tmp/www/$f" || fail "socks5h $f differs"
	ok "socks5h download of $f intact"
	curl -sf --socks5 "127.0.0.1:$socks_port" \
		"http://127.0.0.1:$http_port/$f" -o "$tmp/out" ||
		fail "socks5 $f"
	cmp -s "$tmp/out" "$tmp/www/$f" || fail "socks5 $f differs"
	ok "socks5 download of $f intact"
	curl -sf -p -x "http://127.0.0.1:$socks_port" \
		"http://127.0.0.1:$http_port/$f" -o "$tmp/out" ||
		fail "http connect $f"
	cmp -s "$tmp/out" "$tmp/www/$f" || fail "http connect $f differs"
	ok "HTTP CONNECT download of $f intact"
	curl -sf "http://127.0.0.1:$fwd_port/$f" -o "$tmp/out" ||
		fail "-L $f"
	cmp -s "$tmp/out" "$tmp/www/$f" || fail "-L $f differs"
	ok "-L download of $f intact"
done

# SOCKS5 reply codes from real situations (curl prints the code).
out=$(curl -sS --socks5-hostname "127.0.0.1:$socks_port" \
	"http://127.0.0.1:$closed_port/" 2>&1 || true)
case $out in *"(5)"*) ok "closed port gives SOCKS reply 5";;
	*) fail "closed port: $out";; esac
out=$(curl -sS --socks5-hostname "127.0.0.1:$socks_port" \
	"http://nosuchhost.invalid/" 2>&1 || true)
case $out in *"(4)"*) ok "unknown name gives SOCKS reply 4";;
	*) fail "unknown name: $out";; esac
code=$(curl -s -o /dev/null -w '%{http_connect}' -p \
	-x "http://127.0.0.1:$socks_port" "http://127.0.0.1:$closed_port/" ||
	true)
[ "$code" = 502 ] || fail "HTTP CONNECT to a closed port gave $code"
ok "HTTP CONNECT to a closed port gives 502"

# 100 downloads at once.
for i in $(seq 1 100); do
	curl -sf --socks5-hostname "127.0.0.1:$socks_port" \
		"http://127.0.0.1:$http_port/small" -o "$tmp/par.$i" &
done
wait_ok=1
for job in $(jobs -p); do
	case " ${pids[*]} " in *" $job "*) continue;; esac
	wait "$job" || wait_ok=0
done
[ $wait_ok = 1 ] || fail "a parallel download failed"
for i in $(seq 1 100); do
	cmp -s "$tmp/par.$i" "$tmp/www/small" || fail "parallel $i differs"
done
ok "100 concurrent downloads intact"

# A client with the wrong secret is refused with a clear message.
set +e
timeout 30 "$client_bin" -W "127.0.0.1:$http_port" -k "$tmp/wrong" \
	"tcp://127.0.0.1:$server_port" </dev/null >"$tmp/wrong.out" \
	2>"$tmp/wrong.err"
status=$?
set -e
[ $status = 1 ] || fail "wrong secret: exit status $status"
grep -q "authentication refused by server (wrong secret?)" "$tmp/wrong.err" ||
	fail "wrong secret: $(cat "$tmp/wrong.err")"
ok "wrong secret refused: $(head -1 "$tmp/wrong.err")"

# The server kept serving throughout.
curl -sf --socks5-hostname "127.0.0.1:$socks_port" \
	"http://127.0.0.1:$http_port/small" -o "$tmp/out" &&
	cmp -s "$tmp/out" "$tmp/www/small" || fail "server stopped serving"
ok "server still serving"

echo "$passed passed, 0 failed"
