#!/usr/bin/env bash
# USB links for real: boots Debian's kernel in qemu (TCG) with an initramfs
# built here from Debian packages (busybox-static, the kernel's USB gadget
# modules, curl) and the project's agg-server and agg-client with the
# shared libraries they need, runs tests/vm/guest.sh inside and checks the
# PASS lines it prints on the serial console.
# In a sanitizer build the runtimes come along (ldd) and any report fails
# the last check. Usage: usb_vm.sh BUILDDIR [bench]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$1" && pwd)
mode=${2:-test}
server_bin=$build/proxy-server/agg-server
client_bin=$build/proxy-client/agg-client

skip() { echo "SKIP: $*"; exit 77; }
need() {
	command -v "$1" >/dev/null 2>&1 && return 0
	# CI installs them all (.ci/packages): missing there is a failure.
	if [ "${CI:-}" = true ]; then echo "FAIL: $1 is not installed" >&2; exit 1; fi
	skip "$1 is not installed (apt-get install qemu-system-x86 busybox-static cpio)"
}
need qemu-system-x86_64
need busybox
need cpio
need curl

kdir=$("$here/kernel.sh")
tmp=$(mktemp -d /tmp/agg-usbvm.XXXXXX)
trap 'rm -rf "$tmp"' EXIT INT TERM
root=$tmp/root
mkdir -p "$root"/{bin,sbin,usr/bin,dev,proc,sys,tmp,run,etc,lib}
cp "$(command -v busybox)" "$root/bin/busybox"
cp -a "$kdir/lib/modules" "$root/lib/"
cp "$server_bin" "$client_bin" "$(command -v curl)" "$root/usr/bin/"
cp "$here/guest.sh" "$root/test.sh"

# The shared libraries of the binaries: the system's at the paths ldd
# names, the build tree's (libagg) in /opt/agg/lib, since the build may
# live under /tmp, a tmpfs in the VM. The directories go into
# LD_LIBRARY_PATH (the build's rpaths are relative).
for bin in "$server_bin" "$client_bin" "$(command -v curl)"; do
	ldd "$bin" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }'
done | sort -u > "$tmp/libs"
: > "$tmp/libdirs"
while read -r lib; do
	case $lib in
	/lib/* | /lib64/* | /usr/*) dest=$lib ;;
	*) dest=/opt/agg/lib/$(basename "$lib") ;;
	esac
	mkdir -p "$root$(dirname "$dest")"
	cp -L "$lib" "$root$dest"
	dirname "$dest" >> "$tmp/libdirs"
done < "$tmp/libs"
libpath=$(sort -u "$tmp/libdirs" | paste -sd :)
printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
echo '127.0.0.1 localhost' > "$root/etc/hosts"
echo 'nameserver 127.0.0.1' > "$root/etc/resolv.conf"

cat > "$root/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/bin:/bin
export LD_LIBRARY_PATH=$libpath
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
mount -t devtmpfs dev /dev
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
echo AGG-VM-BOOTED
sh /test.sh $mode
poweroff -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$tmp/initrd.gz"

log=$tmp/console.log
rc=0
timeout 900 qemu-system-x86_64 -nographic -nic none -no-reboot -m 1024 \
	-smp 2 -kernel "$kdir/vmlinuz" -initrd "$tmp/initrd.gz" \
	-append 'console=ttyS0 panic=-1 loglevel=3' \
	> "$log" 2>&1 < /dev/null || rc=$?
tr -d '\r' < "$log" > "$log.txt"
mkdir -p "$build/meson-logs"
cp "$log.txt" "$build/meson-logs/usb-vm-$mode-console.log"
if [ "$mode" = bench ]; then
	grep '^BENCH' "$log.txt" || { cat "$log.txt"; exit 1; }
	exit 0
fi
passed=0
failed=0
while read -r line; do
	case $line in
	PASS:*) passed=$((passed + 1)); echo "ok $passed - ${line#PASS: }";;
	FAIL:*) failed=$((failed + 1)); echo "not ok - ${line#FAIL: }";;
	esac
done < "$log.txt"
if ! grep -q '^AGG-VM-RESULT: ' "$log.txt"; then
	echo "--- console (qemu exit $rc)"
	tail -n 150 "$log.txt"
	echo "not ok - the VM did not finish the test (qemu exit $rc)"
	failed=$((failed + 1))
elif [ "$failed" -gt 0 ]; then
	echo "--- console"
	tail -n 150 "$log.txt"
fi
# The guest runs 12 checks; fewer PASS lines mean it stopped early.
if [ "$passed" -lt 12 ] && [ "$failed" = 0 ]; then
	echo "not ok - only $passed checks passed"
	failed=1
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
