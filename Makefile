# ferry — the two commands a new user runs, plus the ones developers use.
# `make demo` and `make test` do all their own set-up on a fresh Debian 12 machine (as root).

PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
APT_PKGS_FILE := tests/apt-packages.txt

.PHONY: demo test bench lint venv system-packages clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/ferry demo

# System packages the tests need (SSH lab, rsync, socat, PostgreSQL...), one per line in
# $(APT_PKGS_FILE); installed with apt-get only when one is missing.
system-packages:
	@missing=$$(for p in $$(grep -v '^#' $(APT_PKGS_FILE) 2>/dev/null); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	        echo "installing system packages: $$missing"; \
	        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	    else echo "missing system packages (tests that need them will skip): $$missing"; fi; \
	fi

test: $(STAMP) system-packages
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
