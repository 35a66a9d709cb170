# Two entry points: `make run` (embedded deployment, no server needed) and `make test`.
# Everything else is installed from the lock file into ./.venv by uv, itself kept in ./.tools.
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/.venv
export UV_PYTHON_DOWNLOADS := never

.PHONY: run test lint typecheck install bench-tiny

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

.venv/.installed: $(UV) pyproject.toml uv.lock
	$(UV) sync --locked --quiet
	@touch $@

install: .venv/.installed

## Generate a small synthetic market, ingest it, and serve the API on the embedded deployment.
run: install
	.venv/bin/counterpoint demo

## The whole test suite, plus lint and type checks.
test: install
	.venv/bin/ruff check src tests bench
	.venv/bin/ruff format --check src tests bench
	.venv/bin/mypy
	.venv/bin/pytest -n auto -q $(PYTEST_ARGS)

bench-tiny: install
	.venv/bin/python bench/run_all.py --tiny
