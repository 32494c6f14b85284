# iotsec: `make run` sets up and opens the console, `make test` sets up and runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Debian packages the tests and the lab drive for real (tio: the serial bench's anchor).
TEST_PACKAGES := nftables iptables ipset tmux iproute2 iputils-ping busybox-static openssl mosquitto mosquitto-clients dropbear-bin snmpd snmp tcpdump nmap socat tshark systemd util-linux tio

.PHONY: run test lint format check deps engine bench lab clean

run: $(STAMP)
	$(BIN)/iotsec console

engine: $(STAMP)
	$(BIN)/iotsec engine

# The lab (root): a small IoT network in namespaces and an engine watching it from its gateway.
lab: $(STAMP) deps
	$(BIN)/iotsec lab up --engine
	@echo
	@echo "Next: make run (the console attaches to the lab engine),"
	@echo "      sudo $(BIN)/iotsec lab run bruteforce (an attack), sudo $(BIN)/iotsec lab down (clean up)."

test: $(STAMP) deps
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The whole pre-commit loop.
check: format lint test

bench: $(STAMP)
	$(BIN)/python bench/alert_ingest.py
	$(BIN)/python bench/console_first_frame.py
	$(BIN)/python bench/console_cpu.py
	[ "$$(id -u)" != 0 ] || $(BIN)/python bench/lab_up_down.py
	$(BIN)/python bench/traffic_offline.py
	[ "$$(id -u)" != 0 ] || $(BIN)/python bench/traffic_live.py
	$(BIN)/python bench/detect.py
	[ "$$(id -u)" != 0 ] || $(BIN)/python bench/bans.py
	[ "$$(id -u)" != 0 ] || $(BIN)/python bench/discovery.py
	$(BIN)/python bench/logs.py
	$(BIN)/python bench/serial_console.py

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "iotsec needs Python 3.11 or newer (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

# Installs the missing Debian packages when root; otherwise says what is missing.
deps:
	@command -v dpkg-query >/dev/null 2>&1 || { echo "not Debian: install $(TEST_PACKAGES) yourself"; exit 0; }; \
	missing=""; for pkg in $(TEST_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing Debian packages:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
				apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		else \
			echo "missing tools for some tests:$$missing (install them, or run make test as root)"; \
		fi; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
