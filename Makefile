# Kansli: `make demo` and `make test` each set everything up from a clean checkout.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
KANSLI := $(VENV)/bin/kansli

.PHONY: setup venv chromium system-packages demo demo-mail demo-cluster demo-letters demo-forms test lint typecheck docs bench clean

setup: venv chromium system-packages

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,docs]'
	touch $@

# Playwright cannot download browsers here: use the system Chromium, installing it when missing.
# Headless runs use the headless shell (same Debian source package, half the CPU per page);
# `chromium` serves headed runs and opening reports.
CHROMIUM_PACKAGES := chromium chromium-headless-shell
chromium:
	@if [ -n "$$KANSLI_BROWSER__EXECUTABLE_PATH" ] && [ -x "$$KANSLI_BROWSER__EXECUTABLE_PATH" ]; then \
	  echo "Chromium: $$KANSLI_BROWSER__EXECUTABLE_PATH (KANSLI_BROWSER__EXECUTABLE_PATH)"; exit 0; fi; \
	missing=""; for package in $(CHROMIUM_PACKAGES); do \
	  command -v $$package >/dev/null 2>&1 || missing="$$missing $$package"; done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "Chromium missing: installing the Debian package(s)$$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null || exit 1; \
	elif [ -n "$$missing" ]; then \
	  echo "Not installed:$$missing (sudo apt-get install$$missing)" >&2; fi; \
	if command -v chromium-headless-shell >/dev/null 2>&1 || command -v chromium >/dev/null 2>&1; then \
	  for package in $(CHROMIUM_PACKAGES); do \
	    command -v $$package >/dev/null 2>&1 && echo "Chromium: $$(command -v $$package)"; done; true; \
	else \
	  echo "Chromium not found. Install it (sudo apt-get install $(CHROMIUM_PACKAGES)) or set KANSLI_BROWSER__EXECUTABLE_PATH." >&2; \
	  exit 1; \
	fi

# The servers and office the inbound helpers drive (shared/pdf.py, shared/mailbox.py, shared/transfer.py)
# and their tests start on 127.0.0.1: LibreOffice headless with its UNO bridge for the system Python,
# Dovecot IMAP, OpenSSH's sshd. Installed when missing; none of them is started as a system service.
SYSTEM_PACKAGES := libreoffice-writer-nogui python3-uno dovecot-imapd openssh-server
system-packages:
	@missing=""; for package in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$package 2>/dev/null | grep -q "install ok installed" \
	    || missing="$$missing $$package"; done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "Missing: installing the Debian package(s)$$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null || exit 1; \
	elif [ -n "$$missing" ]; then \
	  echo "Not installed:$$missing (sudo apt-get install$$missing)" >&2; exit 1; fi; \
	echo "LibreOffice: $$(command -v soffice); Dovecot: $$(command -v dovecot || echo /usr/sbin/dovecot); sshd: /usr/sbin/sshd"

demo: setup demo-letters demo-forms

demo-letters:
	@rm -rf var/out/decision_letters
	@$(KANSLI) run decision_letters --param input=demo/data/applications.xlsx --rerun-all; \
	  code=$$?; [ $$code -eq 0 ] || [ $$code -eq 3 ] || exit $$code
	@echo
	@echo "Letters:  $$(pwd)/var/out/decision_letters/beslut-*.docx ($$(ls var/out/decision_letters/beslut-*.docx | wc -l) files)"
	@echo "Results:  $$(pwd)/var/out/decision_letters/applications-resultat.xlsx (bad rows marked)"

# The demo e-service in the background (own db under var/), intake_forms against it, then stop it.
DEMO_SITE_PORT ?= 8765
demo-forms:
	@rm -rf var/out/intake_forms var/demo-site; mkdir -p var/demo-site
	@$(KANSLI) demo-site --port $(DEMO_SITE_PORT) --db var/demo-site/eservice.db > var/demo-site/site.log 2>&1 & \
	  site=$$!; trap 'kill $$site 2>/dev/null; wait $$site 2>/dev/null' EXIT; \
	  for i in $$(seq 1 100); do grep -q "ready at" var/demo-site/site.log && break; \
	    kill -0 $$site 2>/dev/null || { cat var/demo-site/site.log >&2; exit 1; }; sleep 0.1; done; \
	  grep -q "ready at" var/demo-site/site.log || { echo "demo e-service did not start" >&2; exit 1; }; \
	  head -1 var/demo-site/site.log; \
	  KANSLI_ESERVICE__URL=http://127.0.0.1:$(DEMO_SITE_PORT) $(KANSLI) run intake_forms \
	    --param input=demo/data/intake.xlsx --param fast=true --param workers=2 --rerun-all; \
	  code=$$?; [ $$code -eq 0 ] || [ $$code -eq 3 ] || exit $$code
	@echo
	@echo "Results:  $$(pwd)/var/out/intake_forms/intake-resultat.xlsx (case numbers; bad rows marked)"

# Dovecot (IMAP) and OpenSSH (SFTP) on 127.0.0.1 in temp folders, the 40 demo invoices mailed in,
# invoice_inbox run against them, the register copied out of the finance import folder, both stopped.
demo-mail: setup
	@rm -rf var/out/invoice_inbox
	@$(PY) -m demo.mail_demo

# Several hosts on the local PostgreSQL (KANSLI_DEMO_POSTGRES_URL): two workers and two schedulers as
# separate processes, each with a host id and data dir of its own; the demo robots run through them.
demo-cluster: setup
	@$(PY) -m demo.cluster

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# The docs site into var/site; --strict turns every warning (a broken link or anchor, an unknown
# API reference target, a docstring the reference cannot read) into a failure. Not --quiet: it
# hides the cross-reference warnings from --strict. No plugin fetches anything.
docs: venv
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir var/site

test: setup lint docs
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/letters.py

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
