# Warden developer entry points. Services are the real Kafka (KRaft) and Redis that
# scripts/services.py fetches and runs on this machine; see docs/CONTRACTS.md for ports.
SHELL := /bin/bash
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: bootstrap services-up services-down services-status test test-unit demo perf faults soak

bootstrap:
	@scripts/bootstrap.sh

services-up:
	@python3 scripts/services.py up

services-down:
	@python3 scripts/services.py down

services-status:
	@python3 scripts/services.py status

# Whole suite against real services; services this run started are stopped afterwards,
# pass or fail. pytest's exit code is kept, except 5 (no tests collected) is a failure.
# scripts/browser.sh and scripts/promtool.sh first install, if missing, what the browser test
# and the alert-rule check need.
test: bootstrap
	@scripts/browser.sh
	@scripts/promtool.sh
	@rc=0; python3 scripts/services.py run -- $(PY) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	exit $$rc

test-unit: bootstrap
	@rc=0; $(PY) -m pytest -m "not integration" $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-unit: pytest collected no tests" >&2; exit 1; fi; \
	exit $$rc

# The fault suite alone (README "Reliability"): kill -9, Redis frozen, a broker restart, hostile
# input, secrets in logs and a 120 s soak, each on servers or processes of its own. `make test`
# runs these too. `make soak` is the full 10-minute soak (WARDEN_SOAK_SECONDS=600).
FAULT_TESTS := tests/faults tests/integration/test_restart.py tests/integration/test_redis_outage.py

faults: bootstrap
	@rc=0; python3 scripts/services.py run -- $(PY) -m pytest $(FAULT_TESTS) $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make faults: pytest collected no tests" >&2; exit 1; fi; \
	exit $$rc

soak: bootstrap
	@WARDEN_SOAK_SECONDS=$${WARDEN_SOAK_SECONDS:-600} python3 scripts/services.py run -- \
	$(PY) -m pytest -s tests/faults/test_soak.py $(PYTEST_ARGS)

# The main job: local Kafka + Redis, a worker on a simulated workload, a readable summary;
# stops what it started.
demo: bootstrap
	@python3 scripts/services.py run -- .venv/bin/warden demo $(DEMO_ARGS)

# Issue #5 performance harness (README "Performance"): the raw limit, stock Faust, a tutorial
# Faust app and Warden over one workload on the same broker and Redis; prints a table, writes
# bench/results/perf-<date>.json. PERF_ARGS="--events 50000 --latency-seconds 20" for a quick run.
perf: bootstrap
	@python3 scripts/services.py run -- $(PY) bench/perf.py $(PERF_ARGS)
