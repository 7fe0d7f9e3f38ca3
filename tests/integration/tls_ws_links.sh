#!/usr/bin/env bash
# tls://, ws:// and wss:// links on loopback with the real binaries:
# certificates made here with the openssl CLI; a third-party WebSocket
# client (python3-websockets) completes the upgrade and gets a pong; curl
# to another path gets 404; one session of a tcp, a tls and a wss link
# carries 64 MiB through SOCKS intact, also while each link in turn is cut
# (ss -K); certificate mode with a CA and mutual TLS; refusals with their
# messages: wrong CA, wrong host name, expired certificate, wrong PSK,
# plain TCP to a TLS port, missing client certificate; every scheme
# through an HTTP CONNECT proxy (--http-proxy).
# Usage: tls_ws_links.sh BUILDDIR
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_setup tlsws "$1"

# Waits (bounded) until a file holds a line.
wait_line() {
	wait_for grep -qF -- "$2" "$1"
}

# --- certificates -----------------------------------------------------------
c=$tmp/certs
mkdir -p "$c"
newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
	-out "$c/$1.key" 2>/dev/null; }
newkey ca
openssl req -x509 -new -key "$c/ca.key" -out "$c/ca.crt" -days 30 \
	-subj /CN=agg-test-ca 2>/dev/null
newkey other-ca
openssl req -x509 -new -key "$c/other-ca.key" -out "$c/other-ca.crt" \
	-days 30 -subj /CN=other-ca 2>/dev/null
printf '[ca]\ndefault_ca=d\n[d]\ndatabase=%s/index.txt\nnew_certs_dir=%s\nserial=%s/serial\ndefault_md=sha256\npolicy=p\nunique_subject=no\n[p]\ncommonName=supplied\n' \
	"$c" "$c" "$c" > "$c/ca.cnf"
: > "$c/index.txt"
echo 1000 > "$c/serial"
# sign NAME SAN STARTDATE ENDDATE
sign() {
	newkey "$1"
	openssl req -new -key "$c/$1.key" -out "$c/$1.csr" -subj "/CN=$1" \
		2>/dev/null
	printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\n' "$2" \
		> "$c/$1.ext"
	openssl ca -batch -config "$c/ca.cnf" -keyfile "$c/ca.key" \
		-cert "$c/ca.crt" -startdate "$3" -enddate "$4" \
		-in "$c/$1.csr" -out "$c/$1.crt" -extfile "$c/$1.ext" \
		-notext >/dev/null 2>&1 || fail "cannot sign $1"
}
now=$(date -u +%Y%m%d%H%M%SZ)
later=$(date -u -d '+30 days' +%Y%m%d%H%M%SZ)
sign server "IP:127.0.0.1,DNS:localhost" "$now" "$later"
sign wrongname "DNS:agg.test" "$now" "$later"
sign expired "IP:127.0.0.1" 20200101000000Z 20200102000000Z
sign client "DNS:agg-client" "$now" "$later"
ok "certificates made with openssl (CA, server, wrong name, expired, client)"

# --- a PSK server with every scheme ----------------------------------------
mkdir -p "$tmp/www"
head -c $((64 * 1024 * 1024)) /dev/urandom > "$tmp/www/big"
want=$(sha256sum < "$tmp/www/big")
echo "correct horse battery staple" > "$tmp/secret"
echo "wrong horse" > "$tmp/wrong"

http_port=$(free_port)
tcp_port=$(free_port)
tls_port=$(free_port)
wss_port=$(free_port)
ws_port=$(free_port)
socks_port=$(free_port)

/usr/bin/python3 -m http.server "$http_port" --bind 127.0.0.1 \
	--directory "$tmp/www" >"$tmp/http.log" 2>&1 &
pids+=($!)
"$server_bin" -v -k "$tmp/secret" -l "tcp://127.0.0.1:$tcp_port" \
	-l "tls://127.0.0.1:$tls_port" -l "wss://127.0.0.1:$wss_port/agg" \
	-l "ws://127.0.0.1:$ws_port/agg" >"$tmp/server.log" 2>&1 &
pids+=($!)
wait_line "$tmp/server.log" "listening on ws://127.0.0.1:$ws_port" ||
	fail "agg-server did not start"

# A third-party WebSocket client: upgrade, ping answered with a pong.
cat > "$tmp/wsprobe.py" <<'EOF'
import asyncio, sys, websockets
async def main():
    async with websockets.connect(sys.argv[1]) as ws:
        print("upgraded", ws.response_headers["Upgrade"])
        pong = await ws.ping(b"agg")
        await asyncio.wait_for(pong, 5)
        print("pong")
asyncio.run(asyncio.wait_for(main(), 10))
EOF
out=$(/usr/bin/python3 "$tmp/wsprobe.py" "ws://127.0.0.1:$ws_port/agg" 2>&1) ||
	fail "python3-websockets: $out"
[ "$out" = "$(printf 'upgraded websocket\npong')" ] ||
	fail "python3-websockets said: $out"
ok "python3-websockets completes the upgrade on /agg and gets its pong"

status=$(curl -si --http1.1 "http://127.0.0.1:$ws_port/other" | head -1 |
	tr -d '\r')
[ "$status" = "HTTP/1.1 404 Not Found" ] || fail "curl /other: $status"
ok "curl -i --http1.1 to another path: HTTP/1.1 404 Not Found"

# One session: a tcp, a tls and a wss link.
"$client_bin" -v -D "127.0.0.1:$socks_port" -k "$tmp/secret" \
	"tcp://127.0.0.1:$tcp_port" "tls://127.0.0.1:$tls_port" \
	"wss://127.0.0.1:$wss_port/agg" >"$tmp/client.log" 2>&1 &
client_pid=$!
pids+=($client_pid)
wait_line "$tmp/client.log" "connected: 3 links up" || {
	cat "$tmp/client.log" >&2
	fail "three links did not come up"
}
ok "tcp, tls and wss links join one session"

fetch() {
	curl -sf --max-time 120 --socks5-hostname "127.0.0.1:$socks_port" \
		"http://127.0.0.1:$http_port/big" -o "$tmp/out"
}
fetch || fail "download over tcp+tls+wss"
[ "$(sha256sum < "$tmp/out")" = "$want" ] || fail "64 MiB differs"
ok "64 MiB through SOCKS over tcp+tls+wss intact (sha256)"

# Cut each link in turn mid-transfer: the download goes on intact.
for port in $tcp_port $tls_port $wss_port; do
	rm -f "$tmp/out"
	fetch &
	fetch_pid=$!
	for i in $(seq 1 50); do
		[ -s "$tmp/out" ] && break
		sleep 0.05
	done
	ss -K state established "( dport = :$port )" >/dev/null 2>&1 ||
		fail "ss -K cannot cut port $port"
	wait "$fetch_pid" || fail "download after cutting port $port"
	[ "$(sha256sum < "$tmp/out")" = "$want" ] ||
		fail "64 MiB differs after cutting port $port"
	ok "64 MiB intact with the link to port $port cut mid-transfer"
	wait_for grep -q "lost .*:$port via" "$tmp/client.log" ||
		fail "the cut of port $port went unnoticed"
done
kill "$client_pid"
wait "$client_pid" 2>/dev/null || true
# The client's last CLOSE frames left over tls and wss as over tcp.
closed_links() {
	[ "$(grep -c 'up -> closed: closed by peer: client shutting down' \
		"$tmp/server.log")" -ge 3 ]
}
wait_for closed_links || {
	grep "closed" "$tmp/server.log" >&2
	fail "the server did not get the client's CLOSE on every link"
}
ok "the client's CLOSE reaches the server on its tcp, tls and wss links"
if grep "libevent: " "$tmp/server.log" >&2; then
	fail "libevent complained"
fi
ok "no libevent warnings on the server (links freed cleanly)"

# --http-proxy: every link through an HTTP CONNECT proxy (written here; it
# logs each CONNECT and refuses the tcp port with 403).
cat > "$tmp/cproxy.py" <<'PYEOF'
import asyncio, sys
port, refuse = int(sys.argv[1]), sys.argv[2]
async def pipe(r, w):
    try:
        while True:
            d = await r.read(262144)
            if not d:
                break
            w.write(d)
            await w.drain()
    except Exception:
        pass
    finally:
        w.close()
async def handle(r, w):
    head = await r.readuntil(b"\r\n\r\n")
    target = head.split(b" ")[1].decode()
    print("CONNECT", target, flush=True)
    if target.endswith(":" + refuse):
        w.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        await w.drain()
        w.close()
        return
    host, p = target.rsplit(":", 1)
    ur, uw = await asyncio.open_connection(host, int(p))
    w.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
    await w.drain()
    await asyncio.gather(pipe(r, uw), pipe(ur, w))
async def main():
    s = await asyncio.start_server(handle, "127.0.0.1", port)
    print("ready", flush=True)
    async with s:
        await s.serve_forever()
asyncio.run(main())
PYEOF
proxy_port=$(free_port)
/usr/bin/python3 "$tmp/cproxy.py" "$proxy_port" "$tcp_port" \
	>"$tmp/proxy.log" 2>&1 &
pids+=($!)
wait_line "$tmp/proxy.log" ready || fail "CONNECT proxy did not start"
"$client_bin" -v -D "127.0.0.1:$socks_port" -k "$tmp/secret" \
	--http-proxy "http://127.0.0.1:$proxy_port" \
	"tls://127.0.0.1:$tls_port" "wss://127.0.0.1:$wss_port/agg" \
	"ws://127.0.0.1:$ws_port/agg" "tcp://127.0.0.1:$tcp_port" \
	>"$tmp/proxyclient.log" 2>&1 &
client_pid=$!
pids+=($client_pid)
wait_line "$tmp/proxyclient.log" "connected: 3 links up" || {
	cat "$tmp/proxyclient.log" >&2
	fail "links through the HTTP proxy did not come up"
}
fetch || fail "download through the HTTP proxy"
[ "$(sha256sum < "$tmp/out")" = "$want" ] || fail "differs (proxy)"
for port in $tls_port $wss_port $ws_port; do
	grep -qx "CONNECT 127.0.0.1:$port" "$tmp/proxy.log" ||
		fail "no CONNECT to $port"
done
ok "--http-proxy: tls, wss and ws links through CONNECT, 64 MiB intact"
wait_line "$tmp/proxyclient.log" "cannot reach tcp://127.0.0.1:$tcp_port via lo: HTTP proxy refused CONNECT 127.0.0.1:$tcp_port: HTTP/1.1 403 Forbidden" ||
	fail "no message for the refused CONNECT"
ok "--http-proxy: a refused CONNECT is named ('HTTP/1.1 403 Forbidden')"
kill "$client_pid"
wait "$client_pid" 2>/dev/null || true

# --- refusals --------------------------------------------------------------
# expect_client LOGLINE CLIENT-ARGS...: the client logs exactly LOGLINE.
expect_client() {
	local line=$1 port
	shift
	port=$(free_port)
	"$client_bin" -D "127.0.0.1:$port" "$@" \
		>"$tmp/refused.log" 2>&1 &
	local p=$!
	pids+=($p)
	if ! wait_line "$tmp/refused.log" "$line"; then
		kill "$p"
		cat "$tmp/refused.log" >&2
		fail "no '$line'"
	fi
	kill "$p"
	wait "$p" 2>/dev/null || true
}

tls_url="tls://127.0.0.1:$tls_port"
expect_client "agg-client: cannot reach $tls_url via lo: unknown PSK" \
	-k "$tmp/wrong" "$tls_url"
wait_line "$tmp/server.log" "on $tls_url failed: unknown PSK" ||
	fail "server did not name the unknown PSK"
ok "wrong PSK: 'cannot reach $tls_url via lo: unknown PSK' (both sides)"

expect_client "agg-client: cannot reach tcp://127.0.0.1:$tls_port via lo:" \
	-k "$tmp/secret" "tcp://127.0.0.1:$tls_port"
wait_line "$tmp/server.log" "on $tls_url failed: the client does not speak TLS (plain tcp:// to a TLS port?)" ||
	fail "server did not name plain TCP"
ok "plain TCP to a TLS port: the server says 'the client does not speak TLS'"

expect_client "agg-client: cannot reach tls://127.0.0.1:$tcp_port via lo: connection closed during the TLS handshake" \
	-k "$tmp/secret" "tls://127.0.0.1:$tcp_port"
ok "TLS to a plain tcp:// port: 'connection closed during the TLS handshake'"

# Certificate mode, mutual TLS optional.
cert_server() {
	local port=$1 log=$2
	shift 2
	"$server_bin" -v -k "$tmp/secret" -l "tls://127.0.0.1:$port" "$@" \
		>"$log" 2>&1 &
	pids+=($!)
	wait_line "$log" "listening on tls://127.0.0.1:$port" ||
		fail "certificate server did not start"
}
good_port=$(free_port)
good_wss=$(free_port)
cert_server "$good_port" "$tmp/good.log" --cert "$c/server.crt" \
	--key "$c/server.key" -l "wss://127.0.0.1:$good_wss/agg"
status=$(curl -si --http1.1 --cacert "$c/ca.crt" \
	"https://127.0.0.1:$good_wss/other" | head -1 | tr -d '\r')
[ "$status" = "HTTP/1.1 404 Not Found" ] || fail "curl https /other: $status"
cat > "$tmp/wssprobe.py" <<'PYEOF'
import asyncio, ssl, sys, websockets
async def main():
    ctx = ssl.create_default_context(cafile=sys.argv[2])
    async with websockets.connect(sys.argv[1], ssl=ctx) as ws:
        pong = await ws.ping(b"agg")
        await asyncio.wait_for(pong, 5)
        print("pong")
asyncio.run(asyncio.wait_for(main(), 10))
PYEOF
out=$(/usr/bin/python3 "$tmp/wssprobe.py" "wss://127.0.0.1:$good_wss/agg" \
	"$c/ca.crt" 2>&1) || fail "python3-websockets over wss: $out"
[ "$out" = pong ] || fail "python3-websockets over wss said: $out"
ok "wss with a certificate: python3-websockets gets its pong, curl https to another path gets 404"
"$client_bin" -4 -v -D "127.0.0.1:$socks_port" -k "$tmp/secret" \
	--ca "$c/ca.crt" "tls://localhost:$good_port" \
	>"$tmp/certclient.log" 2>&1 &
p=$!
pids+=($p)
wait_line "$tmp/certclient.log" "connected: 1 link up" ||
	fail "certificate links did not come up"
curl -sf --max-time 60 --socks5-hostname "127.0.0.1:$socks_port" \
	"http://127.0.0.1:$http_port/big" -o "$tmp/out" ||
	fail "download over certificate links"
[ "$(sha256sum < "$tmp/out")" = "$want" ] || fail "differs (certificates)"
kill "$p"
wait "$p" 2>/dev/null || true
ok "certificate mode: --ca and the name localhost verified, 64 MiB intact"

u="tls://127.0.0.1:$good_port"
expect_client "agg-client: cannot reach $u via lo: certificate verify failed: unable to get local issuer certificate" \
	-k "$tmp/secret" --ca "$c/other-ca.crt" "$u"
ok "wrong CA: 'certificate verify failed: unable to get local issuer certificate'"

expect_client "agg-client: cannot reach $u via lo: certificate verify failed: unable to get local issuer certificate" \
	-k "$tmp/secret" "$u"
ok "system trust store refuses the test CA"

name_port=$(free_port)
cert_server "$name_port" "$tmp/name.log" --cert "$c/wrongname.crt" \
	--key "$c/wrongname.key"
expect_client "agg-client: cannot reach tls://localhost:$name_port (127.0.0.1) via lo: certificate verify failed: hostname mismatch" \
	-4 -k "$tmp/secret" --ca "$c/ca.crt" "tls://localhost:$name_port"
expect_client "agg-client: cannot reach tls://127.0.0.1:$name_port via lo: certificate verify failed: IP address mismatch" \
	-k "$tmp/secret" --ca "$c/ca.crt" "tls://127.0.0.1:$name_port"
ok "wrong host name: 'hostname mismatch' and 'IP address mismatch'"

old_port=$(free_port)
cert_server "$old_port" "$tmp/old.log" --cert "$c/expired.crt" \
	--key "$c/expired.key"
expect_client "agg-client: cannot reach tls://127.0.0.1:$old_port via lo: certificate verify failed: certificate has expired" \
	-k "$tmp/secret" --ca "$c/ca.crt" "tls://127.0.0.1:$old_port"
ok "expired certificate: 'certificate verify failed: certificate has expired'"

mtls_port=$(free_port)
cert_server "$mtls_port" "$tmp/mtls.log" --cert "$c/server.crt" \
	--key "$c/server.key" --client-ca "$c/ca.crt"
"$client_bin" -v -D "127.0.0.1:$socks_port" -k "$tmp/secret" \
	--ca "$c/ca.crt" --cert "$c/client.crt" --key "$c/client.key" \
	"tls://127.0.0.1:$mtls_port" >"$tmp/mtlsclient.log" 2>&1 &
p=$!
pids+=($p)
wait_line "$tmp/mtlsclient.log" "connected: 1 link up" ||
	fail "mutual TLS link did not come up"
kill "$p"
wait "$p" 2>/dev/null || true
nocert_port=$(free_port)
"$client_bin" -D "127.0.0.1:$nocert_port" -k "$tmp/secret" \
	--ca "$c/ca.crt" "tls://127.0.0.1:$mtls_port" \
	>"$tmp/nocert.log" 2>&1 &
p=$!
pids+=($p)
wait_line "$tmp/mtls.log" "failed: the client sent no certificate" ||
	fail "server did not name the missing client certificate"
kill "$p"
ok "mutual TLS: a client certificate joins; none: 'the client sent no certificate'"

# Client certificates alone (no -k on either side).
nokey_port=$(free_port)
"$server_bin" -v -l "wss://127.0.0.1:$nokey_port/agg" --cert "$c/server.crt" \
	--key "$c/server.key" --client-ca "$c/ca.crt" >"$tmp/nokey.log" 2>&1 &
pids+=($!)
wait_line "$tmp/nokey.log" "listening on wss://127.0.0.1:$nokey_port" ||
	fail "server with --client-ca and no -k did not start"
"$client_bin" -v -D "127.0.0.1:$socks_port" --ca "$c/ca.crt" \
	--cert "$c/client.crt" --key "$c/client.key" \
	"wss://127.0.0.1:$nokey_port/agg" >"$tmp/nokeyclient.log" 2>&1 &
p=$!
pids+=($p)
wait_line "$tmp/nokeyclient.log" "connected: 1 link up" ||
	fail "client certificate without -k did not join"
fetch || fail "download with client certificates only"
[ "$(sha256sum < "$tmp/out")" = "$want" ] || fail "differs (no -k)"
kill "$p"
wait "$p" 2>/dev/null || true
ok "--client-ca without -k: a wss link with a client certificate, 64 MiB intact"

echo "passed $passed"
