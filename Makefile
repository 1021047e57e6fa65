# Kansli: `make demo` and `make test` each set everything up from a clean checkout.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
KANSLI := $(VENV)/bin/kansli

.PHONY: setup venv chromium demo demo-letters demo-forms test lint typecheck bench clean

setup: venv chromium

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# Playwright cannot download browsers here: use the system Chromium, installing it when missing.
chromium:
	@if [ -n "$$KANSLI_BROWSER__EXECUTABLE_PATH" ] && [ -x "$$KANSLI_BROWSER__EXECUTABLE_PATH" ]; then \
	  echo "Chromium: $$KANSLI_BROWSER__EXECUTABLE_PATH (KANSLI_BROWSER__EXECUTABLE_PATH)"; \
	elif command -v chromium >/dev/null 2>&1; then \
	  echo "Chromium: $$(command -v chromium)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "Chromium missing: installing the Debian package 'chromium'"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null && \
	  echo "Chromium: $$(command -v chromium)"; \
	else \
	  echo "Chromium not found. Install it (sudo apt-get install chromium) or set KANSLI_BROWSER__EXECUTABLE_PATH." >&2; \
	  exit 1; \
	fi

demo: setup demo-letters

demo-letters:
	@rm -rf var/out/decision_letters
	$(KANSLI) run decision_letters --param input=demo/data/applications.xlsx --rerun-all; \
	  code=$$?; [ $$code -eq 0 ] || [ $$code -eq 3 ] || exit $$code
	@echo
	@echo "Letters:  $$(pwd)/var/out/decision_letters/beslut-*.docx ($$(ls var/out/decision_letters/beslut-*.docx | wc -l) files)"
	@echo "Results:  $$(pwd)/var/out/decision_letters/applications-resultat.xlsx (bad rows marked)"

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: setup lint
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/letters.py

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
