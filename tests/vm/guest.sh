#!/bin/sh
# Runs inside the USB test VM (busybox sh, as /test.sh): agg-server as a
# USB gadget on dummy_udc, agg-client as USB host with one usb:// link and
# one tcp:// link (through a relay that the test can kill), downloads
# through SOCKS checked by SHA-256, an unplug (UDC unbound) mid-transfer, a
# replug, and the usb link alone. Prints "PASS: ..." / "FAIL: ..." and a
# closing "AGG-VM-RESULT: N passed, N failed".
# With "bench" as $1 it measures instead (see bench.sh).
pass=0
failed=0
ok() { pass=$((pass + 1)); echo "PASS: $*"; }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }
finish() {
	echo "AGG-VM-RESULT: $pass passed, $failed failed"
	exit 0
}
# Waits up to $1 tenths of a second for the command after it to succeed.
wait_for() {
	n=$1
	shift
	while [ "$n" -gt 0 ]; do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.1
		n=$((n - 1))
	done
	return 1
}
count() { grep -c "$1" "$2" 2>/dev/null || true; }
log_has() { grep -q "$1" "$2"; }
size_of() { stat -c %s "$1" 2>/dev/null || echo 0; }
size_at_least() { [ "$(size_of "$1")" -ge "$2" ]; }
usb_ups_above() { [ "$(count 'link usb:1209:0001@.* up' /tmp/client.log)" -gt "$1" ]; }

mode=${1:-test}
gadget=/sys/kernel/config/usb_gadget/agg-dummy_udc_0
mkdir -p /srv /tmp/www
hostname aggvm

echo "correct horse battery staple" > /tmp/secret

# Runs agg-server on usb-gadget URL $1 and checks that it fails at once
# with exit status 1 and the message $2.
gadget_error() {
	out=$(timeout 20 agg-server -k /tmp/secret -l "$1" 2>&1)
	rc=$?
	if [ "$rc" = 1 ] && [ "$out" = "$2" ]; then
		return 0
	fi
	echo "unexpected (exit $rc): $out"
	return 1
}

# 0. Clear errors while the kernel support is missing, piece by piece.
errors=0
gadget_error usb-gadget:// "agg-server: cannot serve usb-gadget://: no USB device controller (/sys/class/udc is missing; load a UDC driver, e.g. modprobe dummy_hcd)" || errors=1

# 1. Modules: the virtual host + device controller pair, the gadget
# framework and FunctionFS.
speed=super
modprobe dummy_hcd is_super_speed=1 2>/dev/null || {
	speed=high
	modprobe dummy_hcd
}
gadget_error usb-gadget://udc9 "agg-server: cannot serve usb-gadget://udc9: no UDC named 'udc9' in /sys/class/udc" || errors=1
gadget_error usb-gadget:// "agg-server: cannot serve usb-gadget://: /sys/kernel/config/usb_gadget is missing: configfs is not mounted or libcomposite is not loaded (modprobe libcomposite; mount -t configfs none /sys/kernel/config)" || errors=1
modprobe libcomposite
mount -t configfs none /sys/kernel/config 2>/dev/null
# The kernel cannot load usb_f_fs by itself here (no /sbin/modprobe).
gadget_error usb-gadget:// "agg-server: cannot serve usb-gadget://: FunctionFS is not available: the usb_f_fs module is missing (modprobe usb_f_fs)" || errors=1
if [ -e /sys/kernel/config/usb_gadget/agg-dummy_udc_0 ]; then
	echo "a failed start left its gadget behind"
	errors=1
fi
if [ "$errors" = 0 ]; then
	ok "agg-server names what is missing: no UDC, no such UDC, no configfs/libcomposite, no usb_f_fs (exit 1, one line each)"
else
	bad "agg-server error messages"
fi
modprobe usb_f_fs
if lsmod | grep -q '^dummy_hcd' && lsmod | grep -q '^usb_f_fs' &&
	lsmod | grep -q '^libcomposite' && [ -e /sys/class/udc/dummy_udc.0 ]; then
	ok "modules loaded (dummy_hcd $speed speed, libcomposite, usb_f_fs), UDC dummy_udc.0"
else
	bad "modules: $(lsmod | tr '\n' ' ')"
	finish
fi

ip link set lo up
head -c $((16 * 1024 * 1024)) /dev/urandom > /tmp/www/big
head -c $((4 * 1024 * 1024)) /dev/urandom > /tmp/www/mid
big_sum=$(sha256sum < /tmp/www/big)
mid_sum=$(sha256sum < /tmp/www/mid)
httpd -p 127.0.0.1:8080 -h /tmp/www

# The tcp link goes through a relay so that it can be cut.
cat > /tmp/relay.sh <<'R'
#!/bin/sh
exec nc 127.0.0.1 5800
R
chmod +x /tmp/relay.sh
nc -ll -p 5801 -e /tmp/relay.sh &
relay=$!

agg-server -v -k /tmp/secret --allow 127.0.0.1 -l tcp://127.0.0.1:5800 \
	-l usb-gadget:// > /tmp/server.log 2>&1 &
server=$!
if wait_for 100 test -e "$gadget/UDC" && wait_for 100 grep -q dummy_udc "$gadget/UDC" &&
	wait_for 100 grep -q 'configured by the host' /tmp/server.log; then
	ok "agg-server is a USB gadget on dummy_udc.0, configured by the host"
else
	bad "gadget not up: $(tail -n 5 /tmp/server.log | tr '\n' '|')"
	finish
fi

if [ "$mode" = bench ]; then
	links="usb://1209:0001"
else
	links="usb://1209:0001?serial=aggvm tcp://127.0.0.1:5801"
fi
# shellcheck disable=SC2086
agg-client -v -k /tmp/secret -D 127.0.0.1:1080 $links > /tmp/client.log 2>&1 &
client=$!
if wait_for 200 log_has 'link usb:1209:0001@.* up' /tmp/client.log; then
	ok "libusb found the gadget (serial aggvm) and the usb link is up: $(grep -o 'USB device usb:[^ ]* attached' /tmp/client.log | head -n 1)"
else
	bad "no usb link: $(tail -n 5 /tmp/client.log | tr '\n' '|')"
	tail -n 20 /tmp/server.log
	finish
fi

fetch() { # URL-path output [curl options...]
	p=$1
	o=$2
	shift 2
	curl -sS --max-time 300 --socks5-hostname 127.0.0.1:1080 "$@" \
		-o "$o" "http://127.0.0.1:8080/$p"
}

if [ "$mode" = bench ]; then
	# One link alone each time: usb, then tcp; curl reports the rate.
	bench() { # label
		for run in 1 2 3; do
			r=$(curl -sS --max-time 300 --socks5-hostname 127.0.0.1:1080 \
				-o /tmp/out -w '%{size_download} %{time_total} %{speed_download}' \
				http://127.0.0.1:8080/big)
			if [ "$(sha256sum < /tmp/out)" = "$big_sum" ]; then
				echo "BENCH $1 $run $r"
			else
				echo "BENCH $1 $run corrupt"
			fi
		done
	}
	bench usb
	kill "$client"
	wait "$client"
	agg-client -k /tmp/secret -D 127.0.0.1:1080 tcp://127.0.0.1:5800 > /tmp/client2.log 2>&1 &
	client=$!
	wait_for 100 fetch mid /tmp/out
	bench tcp
	kill "$client" "$server" "$relay"
	wait "$client" "$server"
	finish
fi

# Host side errors: an absent device, a device node not ours.
agg-client -v -k /tmp/secret -D 127.0.0.1:1081 usb://dead:beef > /tmp/absent.log 2>&1 &
absent=$!
su -s /bin/sh -c 'exec agg-client -v -k /tmp/secret -D 127.0.0.1:1082 usb://1209:0001' nobody > /tmp/denied.log 2>&1 &
denied=$!
node=$(grep -o 'usb:1209:0001@[0-9]*\.[0-9]*' /tmp/client.log | head -n 1)
node=$(printf '/dev/bus/usb/%03d/%03d' "$(echo "${node#*@}" | cut -d. -f1)" "$(echo "${node#*@}" | cut -d. -f2)")
wait_for 100 log_has 'cannot reach usb://dead:beef: no USB device dead:beef found' /tmp/absent.log
wait_for 100 log_has "cannot reach usb://1209:0001: permission denied on $node (run as root or add a udev rule such as SUBSYSTEM==\"usb\", ATTR{idVendor}==\"1209\", ATTR{idProduct}==\"0001\", MODE=\"0660\", GROUP=\"plugdev\")" /tmp/denied.log
kill "$absent" "$denied"
wait "$absent" "$denied"
if log_has 'cannot reach usb://dead:beef: no USB device dead:beef found' /tmp/absent.log &&
	log_has "permission denied on $node (run as root or add a udev rule" /tmp/denied.log; then
	ok "agg-client: '$(grep -o 'cannot reach usb://dead.*' /tmp/absent.log | head -n 1)' and '$(grep -o 'permission denied on [^ ]*' /tmp/denied.log | head -n 1) (...udev rule...)'"
else
	bad "agg-client errors: $(tail -n 2 /tmp/absent.log | tr '\n' '|') $(tail -n 2 /tmp/denied.log | tr '\n' '|')"
fi

wait_for 100 log_has 'connected: 2 links up' /tmp/client.log
if fetch big /tmp/out1 && [ "$(sha256sum < /tmp/out1)" = "$big_sum" ]; then
	ok "16 MiB through SOCKS over the usb + tcp links intact"
else
	bad "16 MiB download over usb + tcp: $(size_of /tmp/out1) bytes"
fi

# 2. Unplug mid-transfer: the download goes on over tcp.
ups=$(count 'link usb:1209:0001@.* up' /tmp/client.log)
fetch big /tmp/out2 --limit-rate 2M &
dl=$!
wait_for 300 size_at_least /tmp/out2 $((4 * 1024 * 1024))
at=$(size_of /tmp/out2)
echo "" > "$gadget/UDC"
if wait_for 100 log_has 'USB link usb:.* ended' /tmp/client.log; then
	ended=$(grep -o 'USB link usb:.* ended.*' /tmp/client.log | tail -n 1)
	case $ended in
	*" 0 bytes in"*) bad "the usb link carried nothing before the unplug: $ended";;
	*) ok "unplug at $at of 16777216 bytes: the host saw it: $ended";;
	esac
else
	bad "unplug at $at bytes not noticed by the host"
fi
if wait "$dl" && [ "$(sha256sum < /tmp/out2)" = "$big_sum" ]; then
	ok "16 MiB download intact across the unplug (finished over tcp)"
else
	bad "download across the unplug: $(size_of /tmp/out2) bytes"
	echo "agg-server: $(cat /proc/$server/stat | cut -d' ' -f3,14,15) wchan=$(cat /proc/$server/wchan) syscall=$(cat /proc/$server/syscall)"
	cat /proc/$server/stack
fi

# 3. Replug: the usb link comes back and carries traffic alone.
echo dummy_udc.0 > "$gadget/UDC"
if wait_for 200 usb_ups_above "$ups"; then
	ok "replug: the usb link is back"
else
	bad "replug: no usb link: $(tail -n 5 /tmp/client.log | tr '\n' '|')"
fi
kill "$relay"
killall nc 2>/dev/null
if wait_for 100 log_has 'cannot reach tcp://127.0.0.1:5801' /tmp/client.log &&
	! nc -w 2 127.0.0.1 5801 < /dev/null 2>/dev/null; then
	ok "tcp link cut (relay gone, re-dials refused)"
else
	bad "tcp link still there"
fi
if fetch mid /tmp/out3 && [ "$(sha256sum < /tmp/out3)" = "$mid_sum" ]; then
	ok "4 MiB through the usb link alone intact"
else
	bad "download over the usb link alone: $(size_of /tmp/out3) bytes"
fi

# 4. Clean stop: the gadget leaves configfs.
kill "$client" "$server"
wait "$client"
client_rc=$?
wait "$server"
server_rc=$?
if [ ! -e "$gadget" ] && [ "$client_rc" = 0 ] && [ "$server_rc" = 0 ] &&
	! grep -q 'ERROR\|Sanitizer\|runtime error' /tmp/server.log /tmp/client.log; then
	ok "SIGTERM: both exit 0, agg-server removed its gadget, no sanitizer report"
else
	bad "stop: client exit $client_rc, server exit $server_rc: $(grep -h 'ERROR\|Sanitizer\|runtime error' /tmp/server.log /tmp/client.log | head -n 3 | tr '\n' '|')"
fi
if [ "$failed" -gt 0 ]; then
	echo "--- client log"
	grep -v 'cannot reach tcp' /tmp/client.log | tail -n 60
	echo "--- server log"
	tail -n 80 /tmp/server.log
fi
finish
