# Every entry point a person needs. `make run` and `make test` are the two that matter.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
comma  := ,
SHARDS ?= 2
WORKERS ?= 1
PACKAGES := libs/noetl_common libs/noetl_devstack services/api-shard services/router \
            services/outbox-publisher services/projector services/worker libs/noetl_deploy \
            libs/noetl_ops
PYPROJECTS := $(addsuffix /pyproject.toml,$(PACKAGES))

.PHONY: install tools run scale status test lint unit integration infra-up infra-down conformance noetl-oracle \
        e2e-core noetl-worker-venv conformance-noetl-worker test-api test-scaling bench bench-hotpath bench-write-cost bench-large \
        bench-grow bench-scale bench-history bench-history-migration overload fuzz chaos test-loop-takeover soak clean image deploy-render test-ui ui-tools
FIXTURES ?= ../shared/conformance

install: $(STAMP)

$(STAMP): $(PYPROJECTS) requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (found %s)" % sys.version.split()[0])'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(addprefix -e ,$(PACKAGES)) -r requirements-dev.txt
	touch $(STAMP)

## Start embedded Postgres + NATS and the fleet, run a sample playbook, keep running until Ctrl-C.
## WORKERS=0: no worker of the fleet's own, for an external one (NoETL's: it prints how to start it).
run: install
	$(PY) -m noetl_devstack.run --shards $(SHARDS) --workers $(WORKERS)

## With `make run` up in another terminal: grow or drain its fleet to SHARDS shards, online.
scale: install
	@test "$(origin SHARDS)" != "file" || { echo "usage: make scale SHARDS=<count> (with make run up)" >&2; exit 2; }
	$(PY) -m noetl_ops scale --shards $(SHARDS)

## One row per shard of the fleet `make run` serves: ready, epoch, executions, outbox, lag, drain state.
status: install
	$(PY) -m noetl_ops status

## promtool (Debian's `prometheus` package) for the alert-rule tests: installed when missing and
## this is a root shell with apt-get; otherwise those tests are skipped, saying why.
tools:
	@command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "promtool missing: installing Debian's prometheus package"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q --no-install-recommends prometheus >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends prometheus >/dev/null; } || \
	      echo "could not install promtool: the promtool alert-rule tests will be skipped" >&2; \
	  else \
	    echo "promtool missing (apt-get install prometheus needs root): the promtool alert-rule tests will be skipped" >&2; \
	  fi; }

## The whole suite (lint, unit, integration against real Postgres + NATS it starts itself). Its
## embedded Postgres runs without the WAL flush at commit (asked for by name: the suite tests logic,
## not durability); `make run`, the benches and `make chaos` run it durable, as production does.
## Two pytest workers, each with its own Postgres and NATS, a test file each at a time: the tests
## wait on processes and timers for over half of their wall time, so one worker left a core idle.
test: install tools lint
	NOETL_DEVSTACK_PG_DURABILITY=fast $(PY) -m pytest -n 2 --dist loadfile

## ruff (pycodestyle, pyflakes, bugbear) everywhere; mypy strict on libs/noetl_common, default checks elsewhere.
lint: install
	$(PY) -m ruff check libs services tests bench
	$(PY) -m mypy -p noetl_common -p noetl_api_shard -p noetl_router -p noetl_outbox_publisher -p noetl_projector \
	    -p noetl_worker -p noetl -p noetl_devstack -p noetl_ops -p noetl_deploy

unit: install tools
	$(PY) -m pytest tests/unit

integration: install
	$(PY) -m pytest tests/integration

## The long online-scaling run: a fleet grows 2 -> 3 and drains 3 -> 2 under continuous load.
test-scaling: install
	$(PY) -m pytest tests/integration/scaling -m scaling -s

## NoETL's web UI (NOETL_GUI, built unchanged once per package-lock into .ui-cache/) driven page by page in
## headless Chromium against a fleet it starts; screenshots in .ui-cache/screenshots/. A few minutes.
NOETL_GUI ?= ../shared/noetl-gui
UI_STAMP := $(VENV)/.ui-installed
test-ui: install ui-tools
	NOETL_GUI=$(NOETL_GUI) $(PY) -m tests.ui.gui_build
	NOETL_GUI=$(NOETL_GUI) $(PY) -m pytest tests/ui -m ui

## Chromium (Debian's chromium package; Playwright cannot download browsers here), Node.js + npm to
## build the UI (as root when missing), and Playwright for Python in the venv.
ui-tools: $(UI_STAMP)
	@missing=""; command -v chromium >/dev/null 2>&1 || missing="chromium chromium-driver"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's $$missing"; export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q --no-install-recommends $$missing >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $$missing >/dev/null; }; \
	  else echo "make test-ui needs $$missing (apt-get install, as root)" >&2; exit 1; fi; \
	fi

$(UI_STAMP): $(STAMP) tests/ui/requirements.txt
	$(PY) -m pip install -q -r tests/ui/requirements.txt
	touch $(UI_STAMP)

## Embedded infrastructure only (data under .data/); prints the DSN and NATS URL.
infra-up: install
	$(PY) -m noetl_devstack.infra up

infra-down: install
	$(PY) -m noetl_devstack.infra down

## Run a conformance directory (index.json format) through a fleet it starts, or NOETL_API_URL.
conformance: install
	$(PY) -m tests.conformance $(FIXTURES) --shards $(SHARDS)

## Run one of the project's indexes of NoETL's e2e playbooks (tests/conformance/<name>/index.json) through a
## fleet it starts, the outside world played by local stand-ins: tier2 (Postgres, DuckDB, Python and the test
## API), keychain (`keychain:` against provider stand-ins), rest (plain playbooks; public APIs through the test
## API's proxy), nats (the nats tool, the gateway's auth0 set), cloud (GCS, Snowflake, DuckLake), jobs
## (container/script steps as Kubernetes Jobs, subscriptions), services (the e2e server's PFT/patient API, an
## IB gateway, quantum_cudaq's services), frames (NoETL's frames runtime: a frame outlasting its lease commits
## on heartbeats). ONLY=id,... runs a few.
conformance-%: install
	$(PY) -m tests.conformance tests/conformance/$* --shards $(SHARDS) $(if $(ONLY),--only $(ONLY))

## NoETL's "core" regression set (noetl/e2e scripts/rust_regression_run.sh; the 63 of its 66 fixtures in
## ../shared/e2e) the way that script runs it: all registered first, default workloads with only addresses
## pointed at the test API and a scratch database, misses run once more. ONLY=id,... runs a few. What does
## not yet end as intended is listed with its reason in tests/conformance/core/known_failures.json.
e2e-core: install
	$(PY) -m tests.conformance tests/conformance/core --shards $(SHARDS) $(if $(ONLY),--only $(ONLY)) \
	    --known-failures tests/conformance/core/known_failures.json

## Where a playbook's intended outcome is unclear, NoETL's own server with NoETL's own worker is the oracle:
## PLAYBOOKS (paths under ../shared/e2e, comma-separated) registered and run there; prints each outcome.
noetl-oracle: install
	$(PY) -m tests.conformance.oracle $(subst $(comma), ,$(PLAYBOOKS))

## NoETL's own Python worker (../shared/noetl-reference, unchanged) in a venv of its own: Python 3.12+
## (pyenv's, or NOETL_WORKER_PYTHON), pinned dependencies; built once (~40 s) under .cache/, reused after.
noetl-worker-venv: install
	$(PY) -m tests.support.noetl_worker.venv

## The conformance index with NoETL's own worker as the only worker (the fleet's: none; what NoETL's
## worker 4.26 cannot run is listed with its reason in tests/conformance/noetl_worker_known_failures.json),
## then a mixed run (both workers, 50 executions) that fails if any command's tool ran more than once.
conformance-noetl-worker: noetl-worker-venv
	$(PY) -m pytest -m noetl_worker tests/integration/fleet/test_noetl_python_worker.py
	$(PY) -m tests.conformance $(FIXTURES) --shards $(SHARDS) --workers 0 --external-worker noetl \
	    --known-failures tests/conformance/noetl_worker_known_failures.json
	$(PY) -m tests.conformance.mixed --executions 50 --shards $(SHARDS)

## Serve the local test API (the e2e suite's paginated/flaky/probe endpoints) on TEST_API_PORT until Ctrl-C.
TEST_API_PORT ?= 5555
test-api: install
	NOETL_HTTP_PORT=$(TEST_API_PORT) $(PY) -m tests.support.testapi

bench: install
	$(PY) -m bench

## Fleet vs DBOS and Restate (same run, interleaved), then NoETL's server vs the fleet, both with NoETL's worker;
## every peer installs itself once into bench/.peers (PyPI, npm) or is skipped saying why. PEERS=dbos,restate,noetl;
## REPS: each workload runs that many times, sides taking turns, and the median run is reported.
PEERS ?= dbos,restate,noetl
REPS ?= 3
bench-hotpath: install
	$(PY) -m bench.hotpath_bench --peers $(PEERS) --reps $(REPS)

## What the shard writes per step (transactions, statements, rows, index entries) for the 3-step,
## loop and ingest workloads, counted on durable Postgres; stored under LABEL in bench/results/write_cost.json.
LABEL ?= current
bench-write-cost: install
	$(PY) -m bench.write_cost --label $(LABEL)

## NoETL's heavy-payload batch playbooks at their real 256 KB per item on a 1-shard fleet (durable Postgres),
## the shard's RSS sampled throughout (bound 512 MB), transactions per step; bench/results/large_payload.json.
bench-large: install
	$(PY) -m bench.large_payload_bench

## One shard empty vs holding EVENTS bulk-generated events (default 10^7: ~15 GB of disk, a quiet
## machine), and a retention run under writer load; bench/results/history.json.
EVENTS ?= 10000000
bench-history: install
	$(PY) -m bench.history_bench --events $(EVENTS)

## Migration 0007's run (the shard's downtime) on a 0006 shard holding MIGRATION_EVENTS events, with
## and without the online pre-step (noetl_ops history prepare, under writers); bench/results/history_migration.json.
MIGRATION_EVENTS ?= 1000000
bench-history-migration: install
	$(PY) -m bench.history_migration --events $(MIGRATION_EVENTS)

## Throughput before, during and after growing a running fleet 2 -> 3 shards; bench/results/grow.json.
bench-grow: install
	$(PY) -m bench.grow_bench

## 30 s of requests far beyond what the fleet admits: shed with 429/503, nothing lost; bench/results/overload.json.
overload: install
	NOETL_OVERLOAD_SECONDS=30 NOETL_OVERLOAD_CLIENTS=300 NOETL_OVERLOAD_REPORT=bench/results/overload.json \
		$(PY) -m pytest -s tests/integration/test_overload.py

## Fuzz the fleet through the router from its /openapi.json (schemathesis), a larger budget than
## make test's: FUZZ_EXAMPLES per operation and phase, FUZZ_SEED to vary the inputs; a few minutes.
FUZZ_EXAMPLES ?= 60
FUZZ_SEED ?= 20261130
fuzz: install
	NOETL_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) NOETL_FUZZ_SEED=$(FUZZ_SEED) NOETL_FUZZ_BUDGET_SECONDS=3000 \
		NOETL_FUZZ_SECONDS=0 \
		$(PY) -m pytest tests/integration/openapi/test_fuzz.py

## Every fault (SIGKILL of each process kind and of Postgres itself, Postgres and NATS restarts, a shard
## paused past the claim lease) under load, on durable Postgres, on a 3-shard fleet with its own Postgres + NATS; bench/results/chaos.json. ~2 min.
chaos: install
	NOETL_CHAOS_REPORT=bench/results/chaos.json $(PY) -m pytest -s -m chaos tests/chaos tests/integration/fleet/test_loop_ahead.py

## A worker, then a shard, SIGKILLed in the middle of a sequential loop run ahead: the loop ends, one
## iteration at a time and in order (the chaos-marked part of test_loop_ahead.py; in .ci/run).
test-loop-takeover: install
	NOETL_DEVSTACK_PG_DURABILITY=fast $(PY) -m pytest -m chaos tests/integration/fleet/test_loop_ahead.py

## Minutes of steady load on a 2-shard fleet as make run starts it; memory, table sizes and latency sampled, a flat/growing verdict each; bench/results/soak.json.
SOAK_SECONDS ?= 300
soak: install
	$(PY) -m bench.soak --seconds $(SOAK_SECONDS)

## Build the one fleet image (every service; the module to run is the container argument). Needs docker.
image:
	docker build -t noetl-fleet:dev .

## Render Kubernetes manifests for both overlays (dev, prod) into deploy/rendered/<overlay>/.
deploy-render: install
	$(PY) -m noetl_deploy --shards $(SHARDS) --values deploy/values.yaml --out deploy/rendered

clean: infra-down
	rm -rf .data $(VENV)

## Scale-out with each shard capped at the same CPU share (a cgroup each; root on Linux, else it
## skips saying why): 1, 2, 4, 8 shards, one Postgres and a Postgres per shard, 3-step and ingest,
## and 1 vs 2 capped routers; bench/results/scale.json. SCALE_ARGS to shorten it; ~15 min.
SCALE_ARGS ?=
bench-scale: install
	$(PY) -m bench.scale_bench $(SCALE_ARGS)
