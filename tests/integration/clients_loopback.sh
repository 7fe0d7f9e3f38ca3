#!/usr/bin/env bash
# End-to-end on loopback with third-party clients: ssh through
# agg-client -W (ProxyCommand) to a private sshd, proxychains4 + curl,
# Python PySocks; every SOCKS5 reply code a loopback situation can produce,
# read by a hand-written SOCKS5 client; malformed input to the SOCKS port
# and to the server's link port; usage and runtime errors of both CLIs;
# agg-client stopping on SIGTERM in the middle of a download.
# Needs (Debian 12): openssh-server openssh-client proxychains4 python3-socks
# netcat-openbsd curl python3. Run as root (sshd). Usage:
# clients_loopback.sh BUILDDIR
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
build=$(cd "$1" && pwd)
server_bin=$build/proxy-server/agg-server
client_bin=$build/proxy-client/agg-client
# The system Python: python3-socks is installed for it, not for a pyenv.
py=/usr/bin/python3
tmp=$(mktemp -d /tmp/agg-clients.XXXXXX)
pids=()
sshd_pid=""
cleanup() {
	local p _
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	# sshd goes last: once the agg-servers are gone its session processes
	# see EOF and exit; let it reap them (bounded) so none is orphaned.
	if [ -n "$sshd_pid" ]; then
		for _ in $(seq 1 50); do
			pgrep -P "$sshd_pid" >/dev/null || break
			sleep 0.1
		done
		kill "$sshd_pid" 2>/dev/null || true
	fi
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

skip() { echo "ok - SKIP $*"; }

# Waits (bounded) until a command succeeds.
wait_for() {
	local _
	for _ in $(seq 1 150); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.1
	done
	return 1
}

# Waits (bounded: 50 x 0.1 s) until process $1 has exited.
wait_gone() {
	local _
	for _ in $(seq 1 50); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.1
	done
	return 1
}

# Runs a command, capturing stdout, stderr and the exit status in
# $tmp/cmd.out, $tmp/cmd.err and $status; bounded by timeout.
status=0
run() {
	set +e
	timeout 30 "$@" </dev/null >"$tmp/cmd.out" 2>"$tmp/cmd.err"
	status=$?
	set -e
}

[ -x "$py" ] || fail "$py not found"
"$py" -c 'import socks' 2>/dev/null ||
	fail "PySocks missing for $py (apt-get install python3-socks)"
for tool in curl proxychains4 nc ssh ssh-keygen sha256sum; do
	command -v "$tool" >/dev/null || fail "$tool not installed"
done

mkdir -p "$tmp/www"
head -c $((1024 * 1024)) /dev/urandom > "$tmp/www/file"
head -c $((16 * 1024 * 1024)) /dev/urandom > "$tmp/www/big"
printf 'x' > "$tmp/www/one"
echo "correct horse battery staple" > "$tmp/secret"

http_port=$(free_port)
server_port=$(free_port)
socks_port=$(free_port)
server2_port=$(free_port)
socks2_port=$(free_port)
hold_closed_port

"$py" -m http.server "$http_port" --bind 127.0.0.1 \
	--directory "$tmp/www" >"$tmp/http.log" 2>&1 &
pids+=($!)
# Pair 1: allows everything.
"$server_bin" -l "tcp://127.0.0.1:$server_port" -k "$tmp/secret" \
	>"$tmp/server.log" 2>&1 &
pids+=($!)
server_pid=$!
# Pair 2: the server denies the HTTP server by policy.
"$server_bin" -l "tcp://127.0.0.1:$server2_port" -k "$tmp/secret" \
	--deny "127.0.0.1:$http_port" >"$tmp/server2.log" 2>&1 &
pids+=($!)
wait_for curl -sf -o /dev/null "http://127.0.0.1:$http_port/one" ||
	fail "http server did not start"
wait_for nc -z 127.0.0.1 "$server_port" || fail "agg-server did not start"
wait_for nc -z 127.0.0.1 "$server2_port" || fail "agg-server 2 did not start"
"$client_bin" -D "127.0.0.1:$socks_port" -k "$tmp/secret" \
	"tcp://127.0.0.1:$server_port" >"$tmp/client.log" 2>&1 &
pids+=($!)
"$client_bin" -D "127.0.0.1:$socks2_port" -k "$tmp/secret" \
	"tcp://127.0.0.1:$server2_port" >"$tmp/client2.log" 2>&1 &
pids+=($!)
wait_for curl -sf -o /dev/null --socks5-hostname "127.0.0.1:$socks_port" \
	"http://127.0.0.1:$http_port/one" || {
	cat "$tmp/client.log" "$tmp/server.log" >&2
	fail "no stream through agg-client"
}
# Pair 2 is up when a stream through it gets its answer (refused: 5).
socks2_ready() {
	local out
	out=$(curl -sS --socks5 "127.0.0.1:$socks2_port" \
		"http://127.0.0.1:$closed_port/" 2>&1 || true)
	case $out in *"(5)"*) return 0;; *) return 1;; esac
}
wait_for socks2_ready || {
	cat "$tmp/client2.log" "$tmp/server2.log" >&2
	fail "no stream through agg-client 2"
}

# ---------------------------------------------------------------------
# 1. ssh with ProxyCommand agg-client -W, to a private sshd.
# ---------------------------------------------------------------------
ssh_port=$(free_port)
mkdir -p "$tmp/ssh"
sshd_ok=1
why=""
if [ "$(id -u)" != 0 ]; then
	sshd_ok=0; why="not root"
elif [ ! -x /usr/sbin/sshd ]; then
	sshd_ok=0; why="/usr/sbin/sshd missing (openssh-server)"
fi
if [ $sshd_ok = 1 ]; then
	mkdir -p /run/sshd
	ssh-keygen -q -t ed25519 -N '' -f "$tmp/ssh/host_key" ||
		fail "ssh-keygen host key"
	ssh-keygen -q -t ed25519 -N '' -f "$tmp/ssh/id" ||
		fail "ssh-keygen client key"
	cp "$tmp/ssh/id.pub" "$tmp/ssh/authorized_keys"
	cat > "$tmp/ssh/sshd_config" <<-EOF
	Port $ssh_port
	ListenAddress 127.0.0.1
	HostKey $tmp/ssh/host_key
	AuthorizedKeysFile $tmp/ssh/authorized_keys
	PasswordAuthentication no
	KbdInteractiveAuthentication no
	PubkeyAuthentication yes
	PermitRootLogin prohibit-password
	UsePAM no
	StrictModes no
	PidFile $tmp/ssh/sshd.pid
	EOF
	/usr/sbin/sshd -D -e -f "$tmp/ssh/sshd_config" >"$tmp/sshd.log" 2>&1 &
	sshd_pid=$!  # not in pids: cleanup stops it last
	if ! wait_for nc -z 127.0.0.1 "$ssh_port"; then
		sshd_ok=0
		why="sshd did not start: $(tail -1 "$tmp/sshd.log")"
	fi
fi
if [ $sshd_ok = 1 ]; then
	proxy="$client_bin -q -W %h:%p -k $tmp/secret tcp://127.0.0.1:$server_port"
	sshc() {
		timeout 60 ssh -F /dev/null -o StrictHostKeyChecking=no \
			-o UserKnownHostsFile=/dev/null -o BatchMode=yes \
			-o LogLevel=ERROR -o IdentitiesOnly=yes \
			-i "$tmp/ssh/id" -o ProxyCommand="$proxy" \
			-p "$ssh_port" root@127.0.0.1 "$@"
	}
	sshc "cat $tmp/www/file" >"$tmp/ssh.out" 2>"$tmp/ssh.err" || {
		cat "$tmp/ssh.err" "$tmp/sshd.log" >&2
		fail "ssh through agg-client -W failed"
	}
	cmp -s "$tmp/ssh.out" "$tmp/www/file" ||
		fail "ssh cat through -W: 1 MiB file differs"
	ok "ssh -o ProxyCommand='agg-client -W': remote cat of 1 MiB intact"
	sshc sha256sum <"$tmp/www/file" >"$tmp/ssh.out" 2>"$tmp/ssh.err" || {
		cat "$tmp/ssh.err" >&2
		fail "ssh sha256sum through agg-client -W failed"
	}
	want=$(sha256sum <"$tmp/www/file" | cut -d' ' -f1)
	got=$(cut -d' ' -f1 <"$tmp/ssh.out")
	[ "$got" = "$want" ] || fail "ssh sha256sum: got '$got', want '$want'"
	ok "ssh -W: 1 MiB piped into a remote sha256sum arrives intact"
else
	skip "ssh through agg-client -W: $why"
fi

# agg-client -W on its own: a request on stdin, the response on stdout,
# exit 0 when the destination closes.
printf 'GET /file HTTP/1.0\r\n\r\n' >"$tmp/req"
set +e
timeout 30 "$client_bin" -q -W "127.0.0.1:$http_port" -k "$tmp/secret" \
	"tcp://127.0.0.1:$server_port" <"$tmp/req" >"$tmp/w.out" 2>"$tmp/w.err"
status=$?
set -e
[ $status = 0 ] || fail "agg-client -W exit status $status: $(cat "$tmp/w.err")"
"$py" - "$tmp/w.out" "$tmp/www/file" <<-'EOF' || fail "agg-client -W: body differs"
	import sys
	data = open(sys.argv[1], "rb").read()
	head, _, body = data.partition(b"\r\n\r\n")
	assert head.startswith(b"HTTP/1.0 200"), head[:40]
	assert body == open(sys.argv[2], "rb").read()
	EOF
ok "agg-client -W: HTTP/1.0 GET of 1 MiB intact, exit status 0"

# ---------------------------------------------------------------------
# 2. proxychains4 (strict_chain, proxy_dns) + curl.
# ---------------------------------------------------------------------
pc_conf() {
	cat <<-EOF
	strict_chain
	proxy_dns
	remote_dns_subnet 224
	tcp_read_time_out 15000
	tcp_connect_time_out 8000
	[ProxyList]
	socks5 127.0.0.1 $1
	EOF
}
pc_conf "$socks_port" > "$tmp/pc.conf"
pc_conf "$socks2_port" > "$tmp/pc2.conf"
for host in 127.0.0.1 localhost; do
	rm -f "$tmp/pc.out"
	timeout 60 proxychains4 -q -f "$tmp/pc.conf" curl -sS --noproxy '*' \
		"http://$host:$http_port/file" -o "$tmp/pc.out" 2>"$tmp/pc.err" || {
		cat "$tmp/pc.err" >&2
		fail "proxychains4 curl http://$host failed"
	}
	cmp -s "$tmp/pc.out" "$tmp/www/file" ||
		fail "proxychains4 curl http://$host: file differs"
	ok "proxychains4 curl http://$host:PORT/file (1 MiB) intact"
done
# The traffic really goes through the proxy: through the pair whose server
# denies the HTTP server, the same download fails.
set +e
timeout 60 proxychains4 -q -f "$tmp/pc2.conf" curl -sS --noproxy '*' \
	"http://127.0.0.1:$http_port/file" -o "$tmp/pc.out" 2>"$tmp/pc.err"
status=$?
set -e
[ $status = 7 ] ||
	fail "proxychains4 through the denying server: curl exit $status, want 7"
ok "proxychains4 through a server denying the destination: curl exit 7"

# ---------------------------------------------------------------------
# 3. Python PySocks (rdns: the name goes to the server).
# ---------------------------------------------------------------------
"$py" - "$socks_port" "$http_port" "$tmp/www/file" <<-'EOF' ||
	import sys, socks
	sp, hp, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
	s = socks.socksocket()
	s.settimeout(30)
	s.set_proxy(socks.SOCKS5, "127.0.0.1", sp, rdns=True)
	s.connect(("localhost", hp))
	s.sendall(b"GET /file HTTP/1.0\r\nHost: localhost\r\n\r\n")
	data = b""
	while True:
	    chunk = s.recv(65536)
	    if not chunk:
	        break
	    data += chunk
	head, _, body = data.partition(b"\r\n\r\n")
	if not head.startswith(b"HTTP/1.0 200"):
	    sys.exit("bad status: %r" % head[:40])
	if body != open(path, "rb").read():
	    sys.exit("body differs: %d bytes" % len(body))
	EOF
	fail "PySocks download through agg-client"
ok "PySocks (SOCKS5, rdns) GET of 1 MiB from localhost intact"

# ---------------------------------------------------------------------
# 4. SOCKS5 reply codes, read by a hand-written client.
# ---------------------------------------------------------------------
# socks5.py PORT CMD ATYP ADDR DPORT: greeting (no auth), request; prints
# "rep=N len=L" where L counts every byte of the reply up to EOF (or 10
# bytes and a working GET /one for success).
cat > "$tmp/socks5.py" <<-'EOF'
	import socket, struct, sys
	port, cmd, atyp, addr, dport = (int(sys.argv[1]), int(sys.argv[2]),
	    int(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
	s = socket.create_connection(("127.0.0.1", port), timeout=30)
	s.sendall(b"\x05\x01\x00")
	g = b""
	while len(g) < 2:
	    c = s.recv(2 - len(g))
	    if not c:
	        sys.exit("greeting reply cut short: %r" % g)
	    g += c
	if g != b"\x05\x00":
	    sys.exit("greeting reply %r" % g)
	if atyp == 1:
	    a = socket.inet_pton(socket.AF_INET, addr)
	elif atyp == 4:
	    a = socket.inet_pton(socket.AF_INET6, addr)
	elif atyp == 3:
	    a = bytes([len(addr)]) + addr.encode()
	else:
	    a = b"\x7f\x00\x00\x01"
	s.sendall(bytes([5, cmd, 0, atyp]) + a + struct.pack(">H", dport))
	r = b""
	while len(r) < 10:
	    try:
	        c = s.recv(10 - len(r))
	    except ConnectionResetError:
	        c = b""
	    if not c:
	        break
	    r += c
	if len(r) < 2:
	    sys.exit("reply cut short: %r" % r)
	if r[1] == 0:
	    s.sendall(b"GET /one HTTP/1.0\r\n\r\n")
	    body = b""
	    while True:
	        c = s.recv(65536)
	        if not c:
	            break
	        body += c
	    if not body.startswith(b"HTTP/1.0 200") or not body.endswith(b"\r\n\r\nx"):
	        sys.exit("GET after success: %r" % body[:60])
	else:
	    while True:
	        try:
	            c = s.recv(65536)
	        except ConnectionResetError:
	            c = b""
	        if not c:
	            break
	        r += c
	if r[0] != 5 or r[2] != 0:
	    sys.exit("bad reply header %r" % r)
	print("rep=%d len=%d" % (r[1], len(r)))
	EOF
# expect_rep WANT PORT CMD ATYP ADDR DPORT -- what
expect_rep() {
	local want=$1 what=$7 out
	out=$(timeout 60 "$py" "$tmp/socks5.py" "$2" "$3" "$4" "$5" "$6" 2>&1) ||
		fail "SOCKS5 $what: $out"
	[ "$out" = "rep=$want len=10" ] ||
		fail "SOCKS5 $what: got '$out', want 'rep=$want len=10'"
	ok "SOCKS5 reply $want (10 bytes): $what"
}
expect_rep 0 "$socks_port" 1 1 127.0.0.1 "$http_port" "success to the HTTP server"
expect_rep 0 "$socks_port" 1 3 localhost "$http_port" "success to localhost by name"
expect_rep 1 "$socks_port" 1 3 'bad!name' "$http_port" "general failure: name the server refuses"
expect_rep 2 "$socks2_port" 1 1 127.0.0.1 "$http_port" "denied by server policy"
expect_rep 2 "$socks2_port" 1 3 localhost "$http_port" "denied by server policy (name)"
expect_rep 4 "$socks_port" 1 3 nosuchhost.invalid 80 "name not found"
expect_rep 5 "$socks_port" 1 1 127.0.0.1 "$closed_port" "connection refused"
expect_rep 7 "$socks_port" 2 1 127.0.0.1 "$http_port" "BIND not supported"
expect_rep 7 "$socks_port" 3 1 127.0.0.1 "$http_port" "UDP ASSOCIATE not supported"
expect_rep 8 "$socks_port" 1 9 - "$http_port" "address type 9 not supported"
# Codes 3 (network unreachable) and 6 (timeout) need routes that only a
# network namespace gives; tests/integration/netns_failover.sh covers them.

# ---------------------------------------------------------------------
# 5. Malformed input to the SOCKS port and to the link port.
# ---------------------------------------------------------------------
# raw.py PORT INFILE: sends the file, reads to EOF (or reset); prints
# what came back as hex (empty line if nothing).
cat > "$tmp/raw.py" <<-'EOF'
	import socket, sys
	s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
	try:
	    s.sendall(open(sys.argv[2], "rb").read())
	except (BrokenPipeError, ConnectionResetError):
	    pass
	r = b""
	while True:
	    try:
	        c = s.recv(65536)
	    except ConnectionResetError:
	        break
	    if not c:
	        break
	    r += c
	print(r.hex())
	EOF
# raw PORT BYTES-FILE: hex of the answer in $answer.
raw() {
	answer=$(timeout 60 "$py" "$tmp/raw.py" "$1" "$2" 2>&1) ||
		fail "raw connection to port $1: $answer"
}

printf '\004\001\000\120\177\000\000\001\000' > "$tmp/in"
raw "$socks_port" "$tmp/in"
[ "$answer" = 005b000000000000 ] ||
	fail "SOCKS4 request: got '$answer', want 005b000000000000"
ok "SOCKS4 request answered with the 8-byte SOCKS4 rejection 00 5b 00..."

printf '\005\001\002' > "$tmp/in"
raw "$socks_port" "$tmp/in"
[ "$answer" = 05ff ] || fail "SOCKS5 methods [02] without --socks-auth: got '$answer'"
ok "SOCKS5 greeting offering only username/password gets 05 ff, then close"

{ printf '\000'; head -c 4095 /dev/urandom; } > "$tmp/in"
raw "$socks_port" "$tmp/in"
[ -z "$answer" ] || fail "random bytes to the SOCKS port: got '$answer'"
ok "4 KiB of random bytes (first byte 0x00) to the SOCKS port: closed, no reply"

printf 'GET / HTTP/1.1\r\nHost: example.com\r\n\r\n' > "$tmp/in"
raw "$socks_port" "$tmp/in"
# http_error STATUS PHRASE EXTRA-HEADERS BODY: hex of agg-client's answer.
http_error() {
	local body="$4"$'\n'
	printf 'HTTP/1.1 %s %s\r\n%sContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
		"$1" "$2" "$3" "${#body}" "$body" | od -An -v -tx1 | tr -d ' \n'
}
want=$(http_error 405 "Method Not Allowed" $'Allow: CONNECT\r\n' \
	"only CONNECT is supported, not GET")
[ "$answer" = "$want" ] ||
	fail "HTTP GET to the SOCKS port: got '$answer', want '$want'"
ok "HTTP GET to the proxy port: exact 405 Method Not Allowed, Allow: CONNECT"

check_400() {
	local req=$1 msg=$2
	printf '%b' "$req" > "$tmp/in"
	raw "$socks_port" "$tmp/in"
	want=$(http_error 400 "Bad Request" "" "$msg")
	[ "$answer" = "$want" ] ||
		fail "HTTP '$req': got '$answer', want '$want'"
	ok "HTTP '${req%%\\r*}': exact 400 Bad Request ($msg)"
}
check_400 'CONNECT nohostport HTTP/1.1\r\n\r\n' \
	"bad CONNECT target 'nohostport': expected host:port"
check_400 'CONNECT  HTTP/1.1\r\n\r\n' "malformed HTTP request line"
check_400 'CONNECT 127.0.0.1:80 HTTP/2.0\r\n\r\n' "not an HTTP/1.x request"

# Garbage to the agg-server link port is dropped; the server keeps serving.
head -c $((64 * 1024)) /dev/urandom > "$tmp/in"
raw "$server_port" "$tmp/in"
ok "64 KiB of random bytes to the link port: the server closes the connection"
printf 'GET / HTTP/1.1\r\nHost: x\r\n\r\n' > "$tmp/in"
raw "$server_port" "$tmp/in"
ok "HTTP GET to the link port: the server closes the connection"
kill -0 "$server_pid" 2>/dev/null || fail "agg-server died after garbage"
curl -sf --max-time 60 --socks5-hostname "127.0.0.1:$socks_port" \
	"http://127.0.0.1:$http_port/file" -o "$tmp/out" ||
	fail "curl through agg-client after garbage to the link port"
cmp -s "$tmp/out" "$tmp/www/file" || fail "download after garbage differs"
ok "after the garbage, curl through agg-client still gets 1 MiB intact"

# ---------------------------------------------------------------------
# 6. Usage errors (exit 2) and runtime failures (exit 1).
# ---------------------------------------------------------------------
# expect_exit STATUS MESSAGE CMD...: exit status and the whole of stderr.
expect_exit() {
	local want=$1 msg=$2
	shift 2
	run "$@"
	[ $status = "$want" ] ||
		fail "$*: exit status $status, want $want ($(cat "$tmp/cmd.err"))"
	[ "$(cat "$tmp/cmd.err")" = "$msg" ] ||
		fail "$*: stderr '$(cat "$tmp/cmd.err")', want '$msg'"
	[ ! -s "$tmp/cmd.out" ] || fail "$*: wrote to stdout"
	ok "exit $want: $msg"
}
expect_exit 2 "agg-client: bad -L spec '8080:host': expected [ADDR:]PORT:HOST:HOSTPORT" \
	"$client_bin" -L 8080:host tcp://127.0.0.1:1
expect_exit 2 "agg-client: bad --link-filter 'bogus': expected any, interface-ip or interface-interface" \
	"$client_bin" --link-filter bogus tcp://x
cc_avail=$(tr -s ' \n' ' ' < /proc/sys/net/ipv4/tcp_available_congestion_control)
cc_avail=${cc_avail% }
expect_exit 2 "agg-client: bad --tcp-congestion 'nosuchcc': the kernel has no such congestion control (available: $cc_avail)" \
	"$client_bin" --tcp-congestion nosuchcc tcp://x
expect_exit 2 "agg-server: bad --tcp-congestion 'nosuchcc': the kernel has no such congestion control (available: $cc_avail)" \
	"$server_bin" --tcp-congestion nosuchcc -k "$tmp/secret"
expect_exit 2 "agg-client: missing SERVER_URL, e.g. tcp://server:5800 (see --help)" \
	"$client_bin"
expect_exit 2 "agg-client: bad -W target 'foo': expected HOST:PORT" \
	"$client_bin" -W foo tcp://127.0.0.1:1
expect_exit 2 "agg-server: no secret: give -k SECRET_FILE, or --insecure-no-auth" \
	"$server_bin"
expect_exit 2 "agg-server: bad --allow rule 'x/99': 'x' is not an IPv4 address" \
	"$server_bin" --allow x/99 -k "$tmp/secret"
expect_exit 1 "agg-server: cannot listen on tcp://127.0.0.1:$server_port: Address already in use" \
	"$server_bin" -l "tcp://127.0.0.1:$server_port" -k "$tmp/secret"
expect_exit 1 "agg-client: cannot listen on 127.0.0.1:$socks_port: Address already in use" \
	"$client_bin" -D "127.0.0.1:$socks_port" -k "$tmp/secret" \
	"tcp://127.0.0.1:$server_port"
expect_exit 1 "agg-client: cannot read secret file $tmp/nonexistent: No such file or directory" \
	"$client_bin" -k "$tmp/nonexistent" "tcp://127.0.0.1:$server_port"

# ---------------------------------------------------------------------
# 7. SIGTERM during a download: agg-client exits (bounded), status 0.
# ---------------------------------------------------------------------
socks3_port=$(free_port)
"$client_bin" -D "127.0.0.1:$socks3_port" -k "$tmp/secret" \
	"tcp://127.0.0.1:$server_port" >"$tmp/client3.log" 2>&1 &
pids+=($!)
client3_pid=$!
wait_for curl -sf -o /dev/null --socks5-hostname "127.0.0.1:$socks3_port" \
	"http://127.0.0.1:$http_port/one" || fail "agg-client 3 did not start"
# A slow reader (small receive buffer, 4 KiB every 10 ms) downloads 16 MiB
# through it; once agg-client is gone the reader is told to read at full
# speed, so what the sockets still buffer drains at once.
cat > "$tmp/slow.py" <<-'EOF'
	import os, socket, sys, time, socks
	port, hport, started, go = (int(sys.argv[1]), int(sys.argv[2]),
	    sys.argv[3], sys.argv[4])
	s = socks.socksocket()
	s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
	s.settimeout(60)
	s.set_proxy(socks.SOCKS5, "127.0.0.1", port, rdns=True)
	s.connect(("127.0.0.1", hport))
	s.sendall(b"GET /big HTTP/1.0\r\n\r\n")
	data = b""
	while True:
	    try:
	        c = s.recv(4096 if not os.path.exists(go) else 1 << 20)
	    except ConnectionResetError:
	        c = b""
	    if not c:
	        break
	    data += c
	    if not os.path.exists(started):
	        open(started, "w").close()
	    if not os.path.exists(go):
	        time.sleep(0.01)
	head, _, body = data.partition(b"\r\n\r\n")
	print("body %d" % len(body))
	EOF
timeout 120 "$py" "$tmp/slow.py" "$socks3_port" "$http_port" \
	"$tmp/slow.started" "$tmp/slow.go" >"$tmp/slow.out" 2>"$tmp/slow.err" &
pids+=($!)
reader_pid=$!
wait_for test -e "$tmp/slow.started" || fail "slow download did not start"
kill -0 "$reader_pid" 2>/dev/null ||
	fail "slow download ended early: $(cat "$tmp/slow.out" "$tmp/slow.err")"
kill -TERM "$client3_pid"
wait_gone "$client3_pid" || fail "agg-client still running 5 s after SIGTERM"
set +e
wait "$client3_pid"
status=$?
set -e
[ $status = 0 ] || fail "agg-client after SIGTERM: exit status $status"
ok "agg-client with an active download exits on SIGTERM, status 0"
touch "$tmp/slow.go"
wait_gone "$reader_pid" || fail "reader still running after agg-client exited"
set +e
wait "$reader_pid"
status=$?
set -e
[ $status = 0 ] || fail "slow reader: status $status: $(cat "$tmp/slow.err")"
got=$(cat "$tmp/slow.out")
size=${got#body }
case $size in ''|*[!0-9]*) fail "slow reader printed '$got'";; esac
[ "$size" -lt $((16 * 1024 * 1024)) ] ||
	fail "download cut by SIGTERM arrived complete ($size bytes)"
ok "the download cut by SIGTERM ends with EOF, incomplete"

# The other clients and servers kept serving.
curl -sf --max-time 60 --socks5-hostname "127.0.0.1:$socks_port" \
	"http://127.0.0.1:$http_port/file" -o "$tmp/out" &&
	cmp -s "$tmp/out" "$tmp/www/file" || fail "server stopped serving"
ok "server still serving"

echo "$passed passed, 0 failed"
