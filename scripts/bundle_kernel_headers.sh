#!/usr/bin/env bash
# Make the generic kernel header set the agent falls back to when a node has no headers of its own
# (agent/kernel/headers.py): one merged, trimmed tree from Debian's linux-headers-*-common and
# linux-headers-*-amd64, laid out as BCC_KERNEL_SOURCE wants it (include/linux/kconfig.h and the
# generated headers side by side). Used by scripts/bootstrap.sh and the image build alike.
#
#   bash scripts/bundle_kernel_headers.sh [DEST]   (default /usr/local/share/bcgov/kernel-headers)
#
# The .debs are fetched with `apt-get download` and unpacked with dpkg-deb: nothing is installed,
# so neither the image nor the host gains gcc and kbuild (linux-headers-*-amd64's dependencies).
# Probes read tracepoint fields and BPF helpers only, so any header set with the basic types
# compiles them; only the headers BCC's own preamble may include are kept (scripts/header_closure.py).
# Idempotent: an existing bundle is kept.
set -euo pipefail

dest=${1:-/usr/local/share/bcgov/kernel-headers}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
say() { printf 'bundle_kernel_headers: %s\n' "$*" >&2; }
die() { printf 'bundle_kernel_headers: error: %s\n' "$*" >&2; exit 2; }

# "closure" marks a bundle made by this version of the script (earlier ones kept whole subtrees).
[ -e "$dest/include/linux/kconfig.h" ] && grep -qx closure "$dest/BCGOV_HEADERS_FROM" 2>/dev/null && exit 0
command -v apt-get >/dev/null || die "apt-get not found: the bundle is made from Debian's linux-headers packages"

arch=$(dpkg --print-architecture)
[ "$arch" = amd64 ] || die "only amd64 is bundled (this machine is $arch): install linux-headers-\$(uname -r) instead"
# linux-headers-amd64 (the meta package) names the current ABI's -amd64 package, which names -common.
flavour=$(apt-cache depends linux-headers-amd64 2>/dev/null | awk '/Depends: linux-headers-.*-amd64$/ {print $2; exit}')
[ -n "$flavour" ] || { apt-get update -qq >/dev/null; flavour=$(apt-cache depends linux-headers-amd64 | awk '/Depends: linux-headers-.*-amd64$/ {print $2; exit}'); }
[ -n "$flavour" ] || die "apt knows no linux-headers-amd64: add Debian's main archive to the apt sources"
common=${flavour%-amd64}-common

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
say "fetching $flavour and $common into $dest"
(cd "$work" && apt-get download -qq -o APT::Sandbox::User=root "$flavour" "$common" >/dev/null) || die "apt-get download $flavour $common failed: check the network and apt sources"
mkdir -p "$work/root"
for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/root"; done
src_common="$work/root/usr/src/$common"
src_flavour="$work/root/usr/src/$flavour"
[ -d "$src_common/include" ] && [ -d "$src_flavour/include/generated" ] || die "unexpected layout in $flavour/$common"

tree="$work/tree"
mkdir -p "$tree/arch/x86"
cp -a "$src_common/include" "$tree/include"
cp -a "$src_common/arch/x86/include" "$tree/arch/x86/include"
cp -a "$src_common/Makefile" "$tree/Makefile"
# The flavour's generated headers and config go over the common tree (that is what "merged" means).
cp -a "$src_flavour/include/." "$tree/include/"
cp -a "$src_flavour/arch/x86/include/." "$tree/arch/x86/include/"
cp -a "$src_flavour/.config" "$tree/.config"
# Keep only what BCC's own preamble can reach (scripts/header_closure.py): ~1.5 MB of 78.
slim="$work/slim"
mkdir -p "$slim"
python3 "$root/scripts/header_closure.py" "$tree" >"$work/keep" || die "no header closure from $flavour/$common"
(cd "$tree" && cp --parents $(cat "$work/keep") "$slim/")
cp "$tree/.config" "$slim/.config"
printf '%s\n%s\nclosure\n' "$flavour" "$common" >"$slim/BCGOV_HEADERS_FROM"

mkdir -p "$(dirname "$dest")"
rm -rf "$dest.new"
mv "$slim" "$dest.new"
rm -rf "$dest"
mv "$dest.new" "$dest"
say "bundled $(du -sh "$dest" | cut -f1) of headers from $flavour at $dest"
