# Every target bootstraps first (idempotent, quiet when there is nothing to do).
PY := .venv/bin/python
DURATION ?= 30

.PHONY: run test lint bench bootstrap probes image clean
bootstrap:
	@bash scripts/bootstrap.sh

run: bootstrap
	$(PY) -m bcgov.cli agent run --duration $(DURATION)

probes: bootstrap
	$(PY) -m bcgov.cli agent probes

test: bootstrap lint
	$(PY) -m pytest -q $(PYTEST_ARGS)

# ruff and mypy as pyproject.toml configures them (what they check, and why a rule is off)
lint: bootstrap
	@rc=0; $(PY) -m ruff check . || rc=1; $(PY) -m mypy || rc=1; exit $$rc  # both report before it fails

bench: bootstrap
	$(PY) -m bench $(BENCH_ARGS)

# The agent and governor images (deploy/daemonset/Dockerfile) with podman, on a debootstrap-made base.
image:
	@bash scripts/image.sh

clean:
	rm -rf .venv var build *.egg-info
