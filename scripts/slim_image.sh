#!/usr/bin/env bash
# Trim an image's venv after scripts/bootstrap.sh installed it (deploy/daemonset/Dockerfile runs
# this; never on a development machine). Measured effects in deploy/daemonset/README.md.
#
#   bash scripts/slim_image.sh VENV [MODULE ...]   (MODULEs: what must still import afterwards)
#
# - pip and setuptools leave: nothing installs into the image's venv afterwards.
# - kubernetes' asyncio client (kubernetes/aio) and the aiohttp stack only it imports leave: the agent
#   uses the synchronous client (checked below by importing what the agent and the CLI import).
# - third-party packages become sourceless bytecode (compileall -b, then the .py files go): about a
#   third of the venv. Docstrings and asserts stay (no -O); only tracebacks inside third-party code
#   lose their source lines. bcgov's own packages keep their sources.
set -euo pipefail

venv=${1:?usage: slim_image.sh VENV [MODULE ...]}
shift
modules=("$@")
site=$(echo "$venv"/lib/python3*/site-packages)
[ -d "$site" ] || { echo "slim_image: no site-packages under $venv" >&2; exit 2; }
py="$venv/bin/python"

rm -rf "$site/kubernetes/aio"
"$py" -m pip uninstall -q -y aiohttp aiohttp-retry yarl multidict frozenlist aiosignal propcache aiohappyeyeballs
"$py" -m pip uninstall -q -y pip setuptools

own='/site-packages/(agent|probes|governor|bcgov|dashboards)/'
"$py" -m compileall -q -b -j 0 -x "$own" "$site" >/dev/null
find "$site" -name '*.py' -regextype posix-extended ! -regex ".*$own.*" -delete
find "$site" -name __pycache__ -regextype posix-extended ! -regex ".*$own.*" -prune -exec rm -rf {} +

# What the image runs must still import (a failure here fails the build).
for m in kubernetes.client kubernetes.watch kubernetes.config bcgov.cli rich.live rich.table "${modules[@]}"; do
  "$py" -c "import $m" || { echo "slim_image: $m no longer imports" >&2; exit 2; }
done
