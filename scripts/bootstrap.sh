#!/usr/bin/env bash
# Bring a fresh Debian 12 machine (or an agent image) to the point where `bcgov` runs:
# Debian packages (BCC, kernel headers, the servers the tests drive), tracefs, and .venv.
# Idempotent and quiet when there is nothing to do; every step checks before it acts.
#
#   BCGOV_BOOTSTRAP_SERVERS=0  skip the Debian servers and tools used only by tests (the images)
#   BCGOV_BOOTSTRAP_VENV=0     skip .venv (the image installs into its own venv path)
#   BCGOV_BOOTSTRAP_HOST=0     skip host steps (kernel headers, tracefs): an image build runs on some
#                              other kernel, and the pod gets both from its node (hostPath mounts)
#   BCGOV_BOOTSTRAP_BCC=0      no BCC and no bundled kernel headers (the governor image)
#   BCGOV_EXTRAS=LIST          pip extras installed with bcgov (default dev,governor: everything the tests
#                              use; the agent image: none; the governor image: governor)
#   BCGOV_EDITABLE=0           install bcgov as a regular package, not editable (the images)
#   BCGOV_VENV=DIR             where .venv goes (default: the repo's .venv)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${BCGOV_VENV:-$root/.venv}
say() { printf 'bootstrap: %s\n' "$*" >&2; }
die() { printf 'bootstrap: error: %s\n' "$*" >&2; exit 2; }

[ "$(id -u)" -eq 0 ] || die "must run as root (BPF, tracefs and apt need it): run 'sudo make ...'"
command -v apt-get >/dev/null || die "apt-get not found: bcgov's bootstrap supports Debian/Ubuntu; install python3-bpfcc and kernel headers by hand elsewhere"

bcc=${BCGOV_BOOTSTRAP_BCC:-1}
agent_pkgs=(python3-bpfcc python3-venv)
[ "$bcc" = 1 ] || agent_pkgs=(python3-venv)
# Test-only tools, installed with the servers: BCC's own tools (neighbour tracers), ip, nft, pip.
test_tools=(bpfcc-tools python3-pip iproute2 kmod)
# openssh-client: ssh-keygen signs and verifies evidence bundles (bcgov evidence --sign-key)
# victoria-metrics: the single-node VictoriaMetrics with vmagent (governor tests at scale)
server_pkgs=(prometheus prometheus-alertmanager nftables util-linux procps openssh-client postgresql-15 victoria-metrics)
pkgs=("${agent_pkgs[@]}")
[ "${BCGOV_BOOTSTRAP_SERVERS:-1}" = 1 ] && pkgs+=("${server_pkgs[@]}" "${test_tools[@]}")

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then apt-get update -qq >/dev/null; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing=()
for p in "${pkgs[@]}"; do installed "$p" || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  apt_install "${missing[@]}"
fi

# BCC compiles against /lib/modules/$(uname -r)/build. The running kernel's own headers are right;
# when the archive lacks them, the generic ones serve tracepoint-only programs (they read no structs).
kver=$(uname -r)
moddir=/lib/modules/$kver
host=${BCGOV_BOOTSTRAP_HOST:-1}
if [ "$host" = 1 ] && [ ! -e "$moddir/build/include" ]; then
  if [ "$apt_updated" = 0 ]; then apt-get update -qq >/dev/null; apt_updated=1; fi
  if apt-cache show "linux-headers-$kver" >/dev/null 2>&1; then
    say "installing linux-headers-$kver"
    apt_install "linux-headers-$kver"
  else
    installed linux-headers-amd64 || { say "no headers for $kver in the archive; using the generic ones"; apt_install linux-headers-amd64; }
    gen=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n1)
    common=$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | tail -n1)
    [ -n "$gen" ] && [ -n "$common" ] || die "generic kernel headers not found under /usr/src after installing linux-headers-amd64"
    mkdir -p "$moddir"
    ln -sfn "$gen" "$moddir/build"
    ln -sfn "$common" "$moddir/source"
    say "linked $moddir/build -> $gen"
  fi
fi

# The bundled generic header set the agent falls back to on a node without headers
# (agent/kernel/headers.py); the tests load every probe with it. The image runs this script itself.
if [ "$bcc" = 1 ] && [ "$(dpkg --print-architecture)" = amd64 ]; then
  bash "$root/scripts/bundle_kernel_headers.sh" || die "cannot make the bundled kernel headers (see above)"
elif [ "$bcc" = 1 ] && [ ! -e /usr/local/share/bcgov/kernel-headers/include ]; then
  say "no bundled kernel headers for $(dpkg --print-architecture) (only amd64 is bundled): the agent needs the node's own there"
fi

# tracefs: BCC reads tracepoint layouts from it and attaches through it.
if [ "$host" = 1 ] && [ ! -e /sys/kernel/tracing/events ]; then
  mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || die "cannot mount tracefs at /sys/kernel/tracing: the kernel needs CONFIG_TRACING"
  say "mounted tracefs at /sys/kernel/tracing"
fi

if [ "${BCGOV_BOOTSTRAP_VENV:-1}" = 1 ]; then
  # The Debian Python, with system site packages, is what makes `import bcc` work inside the venv.
  if [ ! -x "$venv/bin/python" ]; then
    say "creating $venv from /usr/bin/python3 (system site packages for bcc)"
    /usr/bin/python3 -m venv --system-site-packages "$venv"
  fi
  stamp="$venv/.bcgov-installed"
  extras=${BCGOV_EXTRAS-dev,governor}
  editable=-e
  [ "${BCGOV_EDITABLE:-1}" = 1 ] || editable=
  want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1) [$extras] $editable"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing bcgov ${editable:+(editable) }with extras [${extras}] into $venv"
    "$venv/bin/pip" install -q --disable-pip-version-check --no-cache-dir $editable "$root${extras:+[$extras]}" \
      2> >(grep -v "^WARNING: Location" >&2)
    echo "$want" >"$stamp"
  fi
  [ "$bcc" = 0 ] || "$venv/bin/python" -c 'import bcc' 2>/dev/null || die "python3-bpfcc is installed but 'import bcc' fails in $venv: recreate it with 'rm -rf $venv && make test'"
fi
