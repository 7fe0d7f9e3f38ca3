#!/usr/bin/env bash
# --config FILE and --show-config on both programs: a server and a client
# configured only by files carry a download; --show-config read back gives
# the same configuration (round trip); command-line options override the
# file's (also lists: -l, -D, SERVER_URL); broken files are refused with
# the file name, the line and what is wrong. Usage: config_files.sh BUILDDIR
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_setup conf "$1"

echo "config test secret" > "$tmp/secret"
echo "other secret" > "$tmp/other"
mkdir -p "$tmp/www"
head -c 300000 /dev/urandom > "$tmp/www/file"
http_port=$(free_port)
server_port=$(free_port)
socks_port=$(free_port)

# 1. Both programs configured by files alone carry a download.
cat > "$tmp/server.conf" <<CONF
# agg-server test configuration
listen = tcp://127.0.0.1:$server_port
listen = tcp://[::1]:$server_port
secret = $tmp/secret
  allow = 127.0.0.1:$http_port
deny = 127.0.0.0/8
monitor = false
verbose = 1
CONF
cat > "$tmp/client.conf" <<CONF
; agg-client test configuration

socks = 127.0.0.1:$socks_port
secret = $tmp/secret
link-filter = any
monitor = off
server = tcp://127.0.0.1:$server_port
server = tcp://[::1]:$server_port
CONF
python3 -m http.server "$http_port" --bind 127.0.0.1 \
	--directory "$tmp/www" >"$tmp/http.log" 2>&1 &
pids+=($!)
"$server_bin" --config "$tmp/server.conf" >"$tmp/server.log" 2>&1 &
pids+=($!)
"$client_bin" --config "$tmp/client.conf" >"$tmp/client.log" 2>&1 &
pids+=($!)
wait_for curl -sf --socks5-hostname "127.0.0.1:$socks_port" \
	"http://127.0.0.1:$http_port/file" -o "$tmp/out" || {
	cat "$tmp/client.log" "$tmp/server.log" >&2
	fail "no download through programs configured by files"
}
cmp -s "$tmp/out" "$tmp/www/file" || fail "download differs"
ok "server and client configured by files alone carry a download intact"
# The file's deny rule is in force: another loopback port is refused.
out=$(curl -sS --socks5-hostname "127.0.0.1:$socks_port" \
	"http://127.0.0.1:$server_port/" 2>&1 || true)
case $out in *"(2)"*) ok "the file's deny rule refuses 127.0.0.1:$server_port (SOCKS reply 2)";;
	*) fail "deny rule from the file not applied: $out";; esac

# 2. --show-config, and reading it back gives the same configuration.
"$server_bin" --config "$tmp/server.conf" --show-config >"$tmp/server.show" ||
	fail "server --show-config"
cat > "$tmp/want" <<CONF
# agg-server configuration: agg-server --config FILE reads it back
listen = tcp://127.0.0.1:$server_port
listen = tcp://[::1]:$server_port
secret = $tmp/secret
allow = 127.0.0.1:$http_port
deny = 127.0.0.0/8
monitor = false
verbose = true
CONF
diff -u "$tmp/want" "$tmp/server.show" || fail "server --show-config"
"$server_bin" --config "$tmp/server.show" --show-config >"$tmp/server.show2"
cmp -s "$tmp/server.show" "$tmp/server.show2" || fail "server round trip"
ok "agg-server --show-config prints the file's configuration and reads back the same"

"$client_bin" --config "$tmp/client.conf" --show-config >"$tmp/client.show" ||
	fail "client --show-config"
cat > "$tmp/want" <<CONF
# agg-client configuration: agg-client --config FILE reads it back
socks = 127.0.0.1:$socks_port
secret = $tmp/secret
link-filter = any
monitor = false
server = tcp://127.0.0.1:$server_port
server = tcp://[::1]:$server_port
CONF
diff -u "$tmp/want" "$tmp/client.show" || fail "client --show-config"
"$client_bin" --config "$tmp/client.show" --show-config >"$tmp/client.show2"
cmp -s "$tmp/client.show" "$tmp/client.show2" || fail "client round trip"
ok "agg-client --show-config prints the file's configuration and reads back the same"

# Every option of a command line survives the round trip through a file.
"$client_bin" -L 8080:intranet:80 -D '[::1]:1081' -k "$tmp/secret" \
	--socks-auth "$tmp/users" -i lo -i eth0 --link-filter interface-ip -6 \
	-v -v --dump "$tmp/dump" --no-monitor tcp://a.example:1 \
	tcp://b.example --show-config >"$tmp/cl.show"
"$client_bin" --config "$tmp/cl.show" --show-config >"$tmp/cl.show2"
cmp -s "$tmp/cl.show" "$tmp/cl.show2" || fail "round trip of a command line"
grep -qx "interface = eth0" "$tmp/cl.show" &&
	grep -qx "forward = 8080:intranet:80" "$tmp/cl.show" &&
	grep -qx "ipv6 = true" "$tmp/cl.show" &&
	grep -qx "server = tcp://b.example" "$tmp/cl.show" ||
	fail "command line not shown: $(cat "$tmp/cl.show")"
ok "a command line with every kind of option survives the round trip"
"$client_bin" --speed-test --time 3 --json tcp://a.example:1 \
	--show-config >"$tmp/st.show"
"$client_bin" --config "$tmp/st.show" --show-config | cmp -s - "$tmp/st.show" &&
	grep -qx "time = 3" "$tmp/st.show" ||
	fail "speed-test round trip: $(cat "$tmp/st.show")"
ok "speed-test options survive the round trip"

# 3. The command line overrides the file, also for repeated options.
"$server_bin" --config "$tmp/server.conf" -l 'tcp://[::]:1' -k "$tmp/other" \
	--monitor --show-config >"$tmp/over"
grep -c '^listen = ' "$tmp/over" | grep -qx 1 &&
	grep -qx 'listen = tcp://\[::\]:1' "$tmp/over" &&
	grep -qx "secret = $tmp/other" "$tmp/over" &&
	grep -qx 'monitor = true' "$tmp/over" &&
	! grep -q 'monitor = false' "$tmp/over" &&
	grep -qx 'deny = 127.0.0.0/8' "$tmp/over" ||
	fail "server override: $(cat "$tmp/over")"
ok "agg-server: -l, -k and --monitor replace the file's listen, secret, monitor"
"$client_bin" --config "$tmp/client.conf" -D 9999 --secret "$tmp/other" \
	tcp://c.example:7 --show-config >"$tmp/over"
grep -qx 'socks = 9999' "$tmp/over" &&
	! grep -q "socks = 127.0.0.1:$socks_port" "$tmp/over" &&
	grep -qx "secret = $tmp/other" "$tmp/over" &&
	[ "$(grep '^server = ' "$tmp/over")" = "server = tcp://c.example:7" ] ||
	fail "client override: $(cat "$tmp/over")"
ok "agg-client: -D, --secret and SERVER_URL replace the file's"

# 4. Broken files: exit 2, one line naming the file, the line, the fault.
expect_error() {
	local prog=$1 status=$2 want=$3 text=$4
	shift 4
	printf "$text" > "$tmp/bad.conf"
	set +e
	"$prog" --config "$tmp/bad.conf" "$@" >/dev/null 2>"$tmp/err"
	local got=$?
	set -e
	[ $got = "$status" ] || fail "$want: exit $got ($(cat "$tmp/err"))"
	[ "$(cat "$tmp/err")" = "$(basename "$prog"): $want" ] ||
		fail "expected '$want', got '$(cat "$tmp/err")'"
	ok "$(cat "$tmp/err")"
}
b=$tmp/bad.conf
expect_error "$client_bin" 2 "$b:3: unknown option 'sock'" \
	'# x\nsecret = /s\nsock = 1080\n' tcp://a:1
expect_error "$client_bin" 2 "$b:2: expected key = value" \
	'server = tcp://a:1\nsocks 1080\n'
expect_error "$client_bin" 2 "$b:1: 'ipv4' takes true or false, not 'maybe'" \
	'ipv4 = maybe\n' tcp://a:1
expect_error "$client_bin" 2 "$b:2: bad URL 'udp://a:1': unknown scheme" \
	'\nserver = udp://a:1\n'
expect_error "$client_bin" 2 "$b:4: bad --time '0': expected whole seconds from 1 to 3600" \
	'speed-test = true\n\n\ntime = 0\n' tcp://a:1
expect_error "$client_bin" 2 "$b:1: 'socks' needs a value" 'socks =\n' tcp://a:1
expect_error "$client_bin" 2 "$b:1: 'config' cannot be set in a configuration file" \
	'config = /etc/x\n' tcp://a:1
expect_error "$client_bin" 2 "$b:1: sections are not used: write key = value lines" \
	'[client]\n' tcp://a:1
expect_error "$server_bin" 2 "$b:2: bad --allow rule '300.1.1.1': '300.1.1.1' is not an IPv4 address" \
	'insecure-no-auth = true\nallow = 300.1.1.1\n'
expect_error "$server_bin" 2 "$b:1: bad key 'Listen': keys are long option names (lowercase, digits, '-')" \
	'Listen = tcp://[::]:1\n'
expect_error "$server_bin" 2 "-k and --insecure-no-auth cannot be combined" \
	'insecure-no-auth = yes\nsecret = /x\n'
set +e
"$client_bin" --config "$tmp/nonexistent.conf" tcp://a:1 2>"$tmp/err"
status=$?
set -e
[ $status = 1 ] && [ "$(cat "$tmp/err")" = "agg-client: cannot read $tmp/nonexistent.conf: No such file or directory" ] ||
	fail "missing file: $status $(cat "$tmp/err")"
ok "$(cat "$tmp/err") (exit 1)"

echo "$passed passed, 0 failed"
