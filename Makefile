# Warden developer entry points. Services are the real Kafka (KRaft) and Redis that
# scripts/services.py fetches and runs on this machine; see docs/CONTRACTS.md for ports.
SHELL := /bin/bash
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: bootstrap services-up services-down services-status test test-unit demo

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

# The main job: local Kafka + Redis, a worker on a simulated workload, a readable summary;
# stops what it started.
demo: bootstrap
	@python3 scripts/services.py run -- .venv/bin/warden demo $(DEMO_ARGS)
