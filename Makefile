# Two entry points a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-long test-hostile test-netns-loss test-image install bench bench-tiers bench-cache bench-all sim clean browser-deps screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the project's dependency list changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# With the control endpoint on (loopback only, admin token required), so the dashboard's buttons work.
run: $(STAMP)
	$(BIN)/pygmy up --control

test: $(STAMP) browser-deps
	$(BIN)/python -m pytest -q

# Headless Chromium and chromedriver from Debian for the browser tests (tests/browser/; skipped without them).
browser-deps:
	./scripts/install-chromium.sh

# docs/web-storefront.png and docs/web-dashboard.png from a real cluster in headless Chromium.
screenshots: $(STAMP) browser-deps
	$(BIN)/python scripts/screenshots.py

# The randomized crash test for five minutes instead of the 40 s `make test` gives it (seed printed).
test-long: $(STAMP)
	PYGMY_FAULT_SECONDS=300 $(BIN)/python -m pytest -q tests/test_replication_faults.py -k random -s

# 5% random packet loss and 50 ms each way between all nodes in network namespaces, at full size (root; a few minutes).
test-netns-loss: $(STAMP)
	PYGMY_NETNS_LOSS=1 $(BIN)/python -m pytest -q tests/test_netns_delay.py -s

# Opt-in (root, a few minutes): build the Dockerfile with podman on a base made by mmdebstrap, run pygmy --help in it.
test-image: $(STAMP)
	PYTHON=$(abspath $(BIN)/python) deploy/image/test-image.sh

sim: $(STAMP)
	$(BIN)/pygmy sim --seeds 1000 --nodes 5

bench: $(STAMP)
	$(BIN)/python -m benchmarks.raft_bench

# Buys/s and lookups/s of the replicated tiers, 1 vs 3 replicas, in one run (docs/tier-benchmark.md).
bench-tiers: $(STAMP)
	$(BIN)/python -m benchmarks.tier_bench

# Lookups/searches with the cache on and off beside a hello-world route, and buy latency (docs/cache-benchmark.md).
bench-cache: $(STAMP)
	$(BIN)/python -m benchmarks.cache_bench
# Every `pygmy bench` experiment at its full size, each on a cluster of its own (docs/RESULTS.md); ~10 min.
bench-all: $(STAMP)
	$(BIN)/pygmy bench latency -n 1000
	$(BIN)/pygmy bench invalidation -n 1000
	$(BIN)/pygmy bench throughput --mix 90/10
	$(BIN)/pygmy bench failover
	$(BIN)/pygmy bench scale

clean:
	rm -rf $(VENV) data .pytest_cache

# The full hostile-client attack of docs/hostile-clients.md: 3,000 slowloris connections and a 20,000-connection storm.
test-hostile: $(STAMP)
	PYGMY_HOSTILE_FULL=1 $(BIN)/python -m pytest -q -s tests/test_hostile_clients.py
