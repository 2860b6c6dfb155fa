# Pairwise: `make run` starts the app with a demo project; `make test` runs every check.
# make run starts web, worker, beat and the score server (the process behind the score API).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
SIMULATE ?= 300
# make run is for a laptop: DEBUG on, and the embedded default unless DATABASE_URL /
# CELERY_BROKER_URL are set (see .env.example).
RUN_ENV := DEBUG=true

.PHONY: run test lint typecheck migrations-check pytest install clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# torch first and pinned: the CPU wheel, never the CUDA build a bare dependency would pull
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	@mkdir -p var
	@# Both ports first: a taken one is reported now, not after the migrations and the demo.
	$(RUN_ENV) $(PY) manage.py run --host $(HOST) --port $(PORT) --check
	$(RUN_ENV) $(PY) manage.py migrate --noinput
	$(RUN_ENV) $(PY) manage.py demo --simulate $(SIMULATE) > var/demo.txt
	@# manage.py run starts web, worker, beat and the score server, each in its own process group, and
	@# stops them all on Ctrl-C or SIGTERM (see annotation/management/commands/run.py).
	$(RUN_ENV) exec $(PY) manage.py run --host $(HOST) --port $(PORT) --banner var/demo.txt

test: $(STAMP) lint typecheck migrations-check pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	DEBUG=true $(VENV)/bin/mypy

migrations-check: $(STAMP)
	DEBUG=true $(PY) manage.py makemigrations --check --dry-run

pytest: $(STAMP)
	@$(PY) -c "import socket; socket.create_connection(('127.0.0.1', 5432), 2)" 2>/dev/null || { \
	  echo "PostgreSQL is not reachable on 127.0.0.1:5432. Start it, e.g.:"; \
	  echo "  pg_ctlcluster --skip-systemctl-redirect \$$(ls /etc/postgresql) main start"; \
	  echo "or: docker compose up -d db redis"; exit 1; }
	@$(PY) -c "import socket; socket.create_connection(('127.0.0.1', 6379), 2)" 2>/dev/null || { \
	  echo "Redis is not reachable on 127.0.0.1:6379. Start it, e.g.:"; \
	  echo "  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no"; \
	  echo "or: docker compose up -d db redis"; exit 1; }
	@# Two passes at once, on PostgreSQL and on the embedded SQLite default: see tests/run_passes.py.
	$(PY) tests/run_passes.py

clean:
	rm -rf var staticfiles .pytest_cache .mypy_cache .ruff_cache
