#!/usr/bin/env bash
# agg-client --speed-test against agg-server's built-in endpoint over 3
# loopback links (127.0.0.1, 127.0.0.2, [::1]): the --json object has every
# field, both rates are > 0 and every link carried a share both ways; the
# text output has a line per second and the summary; usage errors exit 2.
# (The data is checked byte by byte at both ends; test_speedtest shows the
# checker catches corruption.) Usage: speed_test.sh BUILDDIR
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_setup speed "$1"

echo "speed test secret" > "$tmp/secret"
port=$(free_port)
"$server_bin" -l "tcp://[::]:$port" -k "$tmp/secret" >"$tmp/server.log" 2>&1 &
pids+=($!)
urls=("tcp://127.0.0.1:$port" "tcp://127.0.0.2:$port" "tcp://[::1]:$port")
for i in $(seq 1 50); do
	ss -ltn "sport = :$port" | grep -q LISTEN && break
	sleep 0.1
done

timeout 60 "$client_bin" --speed-test --time 2 --json -k "$tmp/secret" \
	"${urls[@]}" >"$tmp/json" 2>"$tmp/json.err" ||
	fail "--json run: exit $? $(cat "$tmp/json.err")"
python3 - "$tmp/json" "$port" <<'PY' || fail "JSON: $(cat "$tmp/json")"
import json, sys
text = open(sys.argv[1]).read()
assert text.count("\n") == 1, "not one line"
r = json.loads(text)
assert set(r) == {"upload_bps", "download_bps", "seconds", "links"}, r.keys()
assert r["seconds"] == 2
assert r["upload_bps"] > 0 and r["download_bps"] > 0
port = sys.argv[2]
want = {"127.0.0.1:" + port, "127.0.0.2:" + port, "[::1]:" + port}
assert {l["remote"] for l in r["links"]} == want, r["links"]
for l in r["links"]:
    assert set(l) == {"name", "interface", "remote", "upload_bps",
                      "download_bps"}, l
    assert l["interface"] == "lo", l
    assert l["name"] == "lo->" + l["remote"], l
    assert l["upload_bps"] > 0 and l["download_bps"] > 0, l
PY
ok "--json: $(cat "$tmp/json")"

timeout 60 "$client_bin" --speed-test --time 2 -k "$tmp/secret" \
	"${urls[@]}" >"$tmp/text" 2>"$tmp/text.err" ||
	fail "text run: exit $? $(cat "$tmp/text.err")"
for re in '^upload +1 s +[0-9.]+ Mbit/s +lo->127\.0\.0\.1:[0-9]+ +[0-9]+%' \
	'^upload +2 s ' '^download +1 s ' '^download +2 s ' \
	'^upload: +[0-9.]+ Mbit/s +\([0-9]+ bytes in [0-9.]+ s, checked by the server\)$' \
	'^download: +[0-9.]+ Mbit/s +\([0-9]+ bytes in [0-9.]+ s, checked here\)$' \
	'^  lo->\[::1\]:[0-9]+ +up +[0-9.]+ Mbit/s +down +[0-9.]+ Mbit/s$'; do
	grep -Eq "$re" "$tmp/text" || fail "no line /$re/ in: $(cat "$tmp/text")"
done
ok "text output: a line per second and the summary"

expect_usage() {
	local want=$1
	shift
	set +e
	"$client_bin" "$@" >/dev/null 2>"$tmp/usage.err"
	local status=$?
	set -e
	[ $status = 2 ] || fail "$*: exit $status"
	[ "$(cat "$tmp/usage.err")" = "agg-client: $want" ] ||
		fail "$*: $(cat "$tmp/usage.err")"
	ok "usage error: $want"
}
expect_usage "bad --time '0': expected whole seconds from 1 to 3600" \
	--speed-test --time 0 "${urls[0]}"
expect_usage "--json needs --speed-test" --json "${urls[0]}"
expect_usage "--speed-test cannot be combined with -D, -L or -W" \
	--speed-test -D 1080 "${urls[0]}"

echo "wrong" > "$tmp/wrong"
set +e
timeout 60 "$client_bin" --speed-test --time 1 -k "$tmp/wrong" "${urls[0]}" \
	>"$tmp/wrong.out" 2>"$tmp/wrong.err"
status=$?
set -e
[ $status = 1 ] && [ ! -s "$tmp/wrong.out" ] &&
	grep -q "authentication refused" "$tmp/wrong.err" ||
	fail "wrong secret: $status $(cat "$tmp/wrong.err")"
ok "wrong secret: exit 1, $(head -1 "$tmp/wrong.err")"

echo "$passed passed, 0 failed"
