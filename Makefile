# Targets match README's commands.
PY ?= python

.PHONY: install demo test test-slow lint format bench

install:
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'

demo: install
	prefloop demo

test: install
	bash scripts/ensure-chromium.sh
	$(PY) -m pytest

test-slow: install
	bash scripts/ensure-chromium.sh
	$(PY) -m pytest -m slow

lint:
	ruff check . && ruff format --check .

format:
	ruff format . && ruff check --fix .

bench:
	$(PY) bench/store.py
