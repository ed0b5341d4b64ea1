# backup-agent: common tasks. `sudo make deps` once, then `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Integration tests fail instead of skipping when a tool is missing.
export BACKUP_AGENT_REQUIRE_INTEGRATION ?= 1

.PHONY: help deps ensure-deps venv test unit integration faults lint format clean base-images images bench \
	bench-s3 up down down-volumes ps logs backup-now drill restore-test snapshots status plan e2e \
	host-bundle recovery-kit migrate

help:
	@echo "sudo make deps   install system packages (restic 0.18, MariaDB, sqlite3, promtool, Docker)"
	@echo "make test        lint, images, then unit, integration and end-to-end tests (nothing may skip)"
	@echo "make bench       MySQL backup and drill vs. the raw tools, 0.25/0.5/1 GB (bench/results/restore.json)"
	@echo "                 then Grafana, files, retention and check vs. the raw tools (bench/results/jobs.json)"
	@echo "make bench-s3    restic on S3 (a throwaway Ceph RGW) vs. rest-server, same data, same run"
	@echo "make unit        unit tests only (they need promtool, nothing else external)"
	@echo "make integration integration tests (real restic, MariaDB, SQLite)"
	@echo "make faults      fault-injection suite: real faults on real processes (needs the images)"
	@echo "make lint        ruff check, ruff format --check, mypy --strict"
	@echo "make base-images air-gapped images: debootstrap base, stand-ins, agent and server"
	@echo "make images      agent and server images on debian:trixie-slim (needs a registry)"
	@echo "make e2e         end-to-end tests only: the compose stack, and five simulated machines"
	@echo "make up          start the compose stack (images, secrets, waits until healthy)"
	@echo "make down        remove its containers and network; data volumes are kept"
	@echo "make down-volumes  remove its containers, network and volumes (all data!)"
	@echo "make ps | logs [SERVICE=x] | plan | snapshots [SERVICE=x]"
	@echo "make status      every service against its RPO and RTO, snapshots, components, alerts"
	@echo "make backup-now SERVICE=mysql|grafana|files   one backup now, by its agent"
	@echo "make drill       restore drills now, through the verifier (old name: restore-test)"
	@echo "make migrate     copy the old shared repository into one repository per service"
	@echo "make recovery-kit KIT=FILE [INVENTORY=...]  export the recovery kit (keep it off every machine)"
	@echo "make host-bundle HOST=machine [INVENTORY=...]  one machine's directory (deploy/bundles/HOST)"

deps:
	bash scripts/install-deps.sh

# Installs missing system packages first when run as root (a fresh machine, CI).
ensure-deps:
	bash scripts/ensure-deps.sh

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(BIN)/.installed

# Everything, as CI runs it: the docker drill and the end-to-end tests need the images.
# The end-to-end tests run beside the other tiers (scripts/test-all.sh).
test: ensure-deps lint base-images
	PYTEST=$(BIN)/pytest bash scripts/test-all.sh

unit: venv
	$(BIN)/pytest tests/unit

integration: venv
	$(BIN)/pytest tests/integration

# Real faults on real processes (tests/faults); some run the agent image.
faults: venv base-images
	$(BIN)/pytest tests/faults

SHELL_SCRIPTS := .ci/run scripts/*.sh images/*/*.sh images/standins/*/*.sh compose/mysql/initdb/*.sh \
	compose/hosts/*.sh

lint: venv
	$(BIN)/ruff check agents tests bench
	$(BIN)/ruff format --check agents tests bench
	$(BIN)/mypy
	shellcheck $(SHELL_SCRIPTS)

format: venv
	$(BIN)/ruff format agents tests bench
	$(BIN)/ruff check --fix agents tests bench

# The MySQL job against the raw tools (dump | restic, restic dump | mariadb), side by side;
# then the Grafana and files jobs, retention and check (bench/jobs_bench.py).
# BENCH_ARGS="--sizes 0.02 --pairs 1" JOBS_BENCH_ARGS="--pairs 1" for a smoke run.
BENCH_ARGS ?= --profile
JOBS_BENCH_ARGS ?= --profile
bench: venv
	$(BIN)/python -m bench.restore_bench $(BENCH_ARGS)
	$(BIN)/python -m bench.jobs_bench $(JOBS_BENCH_ARGS)

# S3 (a throwaway Ceph RGW) against rest-server as restic's store, side by side.
bench-s3: ensure-deps venv
	$(BIN)/python -m bench.s3_bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# Container images. Without a registry: start dockerd if needed, debootstrap the base
# image and the stand-ins (MariaDB, Prometheus), then the project images on that base.
base-images:
	bash scripts/start-dockerd.sh
	bash scripts/base-images.sh
	AIRGAP=1 bash scripts/build-images.sh local/debian:trixie

# The project images on the Dockerfiles' default base (pulled from a registry).
images:
	AIRGAP=0 bash scripts/build-images.sh

# The compose stack (compose/docker-compose.yml); scripts/compose.sh picks its files.
COMPOSE := scripts/compose.sh

up:
	bash scripts/up.sh

down:
	$(COMPOSE) down --remove-orphans

down-volumes:
	$(COMPOSE) --profile restore down --volumes --remove-orphans

ps:
	$(COMPOSE) ps --all

logs:
	$(COMPOSE) logs --follow --tail=100 $(SERVICE)

backup-now:
	@test -n "$(SERVICE)" || { echo "usage: make backup-now SERVICE=mysql|grafana|files"; exit 2; }
	$(COMPOSE) exec $(SERVICE)-agent backup-agent backup $(SERVICE)

drill:
	$(COMPOSE) exec verifier backup-agent drill

# The old name of `make drill`.
restore-test: drill

snapshots:
	$(COMPOSE) exec verifier backup-agent snapshots $(SERVICE)

# Read from the stack's Prometheus (monitoring.prometheus_url of the manifest).
status:
	$(COMPOSE) exec verifier backup-agent status

plan:
	$(COMPOSE) exec verifier backup-agent plan

# One repository per service: copy the snapshots of the old shared repository
# (/srv/restic/agama, password compose/secrets/restic_password) into them, once.
migrate:
	$(COMPOSE) --profile migrate run --rm migrate

# Several machines (manifests/inventory.yaml, or INVENTORY=): the secrets and the CA are
# created once in $(DEPLOY)/secrets, and each machine gets one directory to copy there
# and start with ./up.sh. AIRGAP=1: the stand-in images.
DEPLOY ?= deploy
host-bundle: venv
	@test -n "$(HOST)" || { echo "usage: make host-bundle HOST=machine [INVENTORY=manifests/inventory.yaml]"; exit 2; }
	$(BIN)/backup-agent bundle $(HOST) --inventory $(or $(INVENTORY),manifests/inventory.yaml) \
		--secrets $(DEPLOY)/secrets --output $(DEPLOY)/bundles/$(HOST) $(if $(filter 1,$(AIRGAP)),--airgap)

# The recovery kit, written to KIT (keep it off every machine): of the compose stack, or
# with INVENTORY= of the machines. The export is recorded beside the secrets; on several
# machines, give the backup server its new compose/secrets/recovery-kit.json.
recovery-kit: venv
	@test -n "$(KIT)" || { echo "usage: make recovery-kit KIT=FILE [INVENTORY=manifests/inventory.yaml]"; exit 2; }
	$(BIN)/backup-agent -m manifests/compose.yaml recovery-kit export --output $(KIT) \
		$(if $(INVENTORY),--inventory $(INVENTORY) --secrets $(DEPLOY)/secrets,--secrets $(or $(SECRETS_DIR),compose/secrets))

# The end-to-end test alone (make test runs it too): own project, builds images (cached).
e2e: venv base-images
	$(BIN)/pytest tests/e2e
