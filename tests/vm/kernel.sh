#!/usr/bin/env bash
# Prints the directory holding a Debian kernel for the USB VM test:
# vmlinuz and lib/modules/VERSION with the modules a USB gadget + host pair
# needs (dummy_hcd, libcomposite, usb_f_fs and what they depend on) and
# their modules.dep. The first run downloads Debian's linux-image package
# (apt-get download, no install) and unpacks it into the cache, keyed by
# package name and version: /var/cache/agg-vm, or $AGG_VM_CACHE, or
# ~/.cache/agg-vm when /var/cache is not writable.
set -euo pipefail

modules=(dummy_hcd libcomposite usb_f_fs)

cache=${AGG_VM_CACHE:-/var/cache/agg-vm}
if ! mkdir -p "$cache" 2>/dev/null || [ ! -w "$cache" ]; then
	cache=${XDG_CACHE_HOME:-$HOME/.cache}/agg-vm
	mkdir -p "$cache"
fi

pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
	awk '/Depends: linux-image-[0-9]/ { print $2; exit }') || true
ver=
if [ -n "$pkg" ]; then
	ver=$(apt-cache show --no-all-versions "$pkg" 2>/dev/null |
		awk '/^Version:/ { print $2; exit }') || true
fi
if [ -z "$pkg" ] || [ -z "$ver" ]; then
	# No package lists (apt-get update not run): use what is cached.
	dir=$(ls -d "$cache"/linux-image-*/ 2>/dev/null | tail -n 1)
	if [ -n "$dir" ] && [ -f "$dir/ok" ]; then
		echo "${dir%/}"
		exit 0
	fi
	echo "kernel.sh: cannot find Debian's linux-image-amd64 (run apt-get update)" >&2
	exit 1
fi
dir=$cache/${pkg}_$ver
if [ -f "$dir/ok" ]; then
	echo "$dir"
	exit 0
fi

tmp=$(mktemp -d "$cache/.unpack.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download -q "$pkg=$ver" >/dev/null 2>"$tmp/apt.err") || {
	cat "$tmp/apt.err" >&2
	echo "kernel.sh: cannot download $pkg=$ver" >&2
	exit 1
}
dpkg-deb -x "$tmp"/*.deb "$tmp/x"
kver=$(basename "$(ls -d "$tmp"/x/lib/modules/*/ | head -n 1)")
src=$tmp/x/lib/modules/$kver
out=$tmp/out
mkdir -p "$out/lib/modules/$kver"
cp "$tmp"/x/boot/vmlinuz-* "$out/vmlinuz"
cp "$src/modules.builtin" "$src/modules.order" "$out/lib/modules/$kver/"

# Copies a module and, first, the modules it depends on (read from its
# .modinfo section: Debian's package has no modules.dep).
declare -A copied=()
copy_module() {
	local name=$1 file dep deps
	[ -n "${copied[$name]:-}" ] && return 0
	copied[$name]=1
	file=$(find "$src/kernel" \( -name "$name.ko" -o -name "$name.ko.xz" \
		-o -name "${name//_/-}.ko" -o -name "${name//-/_}.ko" \) | head -n 1)
	if [ -z "$file" ]; then
		grep -q "/$name.ko" "$src/modules.builtin" && return 0
		echo "kernel.sh: module $name not in $pkg" >&2
		exit 1
	fi
	deps=$(grep -a -o 'depends=[^[:cntrl:]]*' "$file" | head -n 1 |
		sed 's/^depends=//; s/,/ /g')
	for dep in $deps; do copy_module "$dep"; done
	mkdir -p "$out/lib/modules/$kver/$(dirname "${file#"$src"/}")"
	cp "$file" "$out/lib/modules/$kver/${file#"$src"/}"
}
for m in "${modules[@]}"; do copy_module "$m"; done
busybox depmod -b "$out" "$kver"
echo "$pkg $ver $kver" > "$out/version"
touch "$out/ok"
rm -rf "$dir"
mv "$out" "$dir"
echo "$dir"
