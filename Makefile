# ferry — the two commands a new user runs, plus the ones developers use.
# `make demo` and `make test` do all their own set-up on a fresh Debian 12 machine (as root).

PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
APT_PKGS_FILE := tests/apt-packages.txt

.PHONY: demo test test-under-load bench lint venv system-packages clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/ferry demo

# System packages the tests need (SSH lab, rsync, socat, PostgreSQL, Chromium + chromedriver for the
# console's browser test...), one per line in
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

# The suite runs on TEST_WORKERS pytest-xdist workers: it waits on processes, sockets and the
# network lab far more than it computes, so more workers than cores still shorten it. The lab's
# tests stay together on one worker (tests/parallel.py). TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 4

test: $(STAMP) system-packages
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

# The whole suite while stress-ng keeps LOAD_CPUS cores busy beside it: no test may depend on how
# fast the machine is. stress-ng (Debian package stress-ng) is installed here when missing, since
# only this target needs it; it is stopped when the suite ends, fails or is interrupted, and its
# own --timeout bounds it should make itself be killed.
LOAD_CPUS ?= 2
test-under-load: $(STAMP) system-packages
	@command -v stress-ng >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends stress-ng >/dev/null; } || \
	    { echo "test-under-load needs stress-ng (apt-get install stress-ng)"; exit 2; }
	@stress-ng --cpu $(LOAD_CPUS) --timeout 2h --quiet & load=$$!; \
	trap 'kill $$load 2>/dev/null; wait $$load 2>/dev/null; exit 130' INT TERM; \
	echo "stress-ng --cpu $(LOAD_CPUS) running (pid $$load)"; started=$$(date +%s); \
	status=0; $(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS) || status=$$?; \
	kill $$load 2>/dev/null; wait $$load 2>/dev/null; \
	echo "suite under load: exit $$status in $$(( $$(date +%s) - started )) s"; exit $$status

bench: $(STAMP)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
