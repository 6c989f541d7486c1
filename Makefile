# Two commands: `make run` and `make test`. Both set everything up from a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)
HOST ?= 127.0.0.1
PORT ?= 8000
SCALEOUT_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
SCALEOUT_REDIS_URL ?= redis://127.0.0.1:6379/0
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: run test install migrate seed browser lint bench clean fuzz port-free

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

migrate: install
	$(BIN)/python manage.py migrate --noinput -v 0

seed: migrate
	$(BIN)/python manage.py seed_demo

# The port first: a server already listening there must not see its running turns marked interrupted.
port-free:
	@$(PYTHON) -c "import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('$(HOST)', $(PORT)))" 2>/dev/null || \
	  { echo "make run: $(HOST):$(PORT) is already in use (another server?): stop it, or run PORT=8001 make run"; exit 1; }

run: port-free seed
	$(BIN)/python manage.py chat_recover
	@echo ""
	@echo "  Chat:       http://$(HOST):$(PORT)/"
	@echo "  Inventory:  http://$(HOST):$(PORT)/inventory/"
	@echo "  Admin:      http://$(HOST):$(PORT)/admin/"
	@echo "  API docs:   http://$(HOST):$(PORT)/api/docs/"
	@echo "  Logins:     admin / $${DEMO_ADMIN_PASSWORD:-admin} (superuser), demo / $${DEMO_USER_PASSWORD:-demo} (plain user), support / $${DEMO_SUPPORT_PASSWORD:-support} (support group)"
	@echo "              (passwords apply when the users are first created)"
	@echo ""
	HOST=$(HOST) PORT=$(PORT) $(BIN)/daphne -b $(HOST) -p $(PORT) config.asgi:application

# Debian's Chromium for the browser tests; installed when missing and we may (root or sudo).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else \
	    echo "chromium is missing and cannot be installed here: apt-get install chromium"; exit 1; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

STAGE2_SKIPPED := $(VENV)/.stage2-skipped

test: migrate browser
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -m "not scaleout" --durations=25
	@rm -f $(STAGE2_SKIPPED)
	@if $(BIN)/python -c "import psycopg,redis,sys; psycopg.connect('$(SCALEOUT_DATABASE_URL)').close(); redis.Redis.from_url('$(SCALEOUT_REDIS_URL)').ping()" 2>/dev/null; then \
	  echo "== scale-out suite: PostgreSQL + Redis + several daphne workers, and the races again on PostgreSQL =="; \
	  DATABASE_URL=$(SCALEOUT_DATABASE_URL) REDIS_URL=$(SCALEOUT_REDIS_URL) $(BIN)/pytest -m "scaleout or concurrency or backends" --durations=15; \
	else \
	  echo "!! scale-out suite NOT run: PostgreSQL ($(SCALEOUT_DATABASE_URL)) or Redis ($(SCALEOUT_REDIS_URL)) unreachable"; \
	  [ -z "$$CI" ] || exit 1; \
	  touch $(STAGE2_SKIPPED); \
	fi
	$(MAKE) bench-quick
	@# The last line says whether every stage ran: a skipped stage must not hide above the benchmarks.
	@if [ -f $(STAGE2_SKIPPED) ]; then \
	  echo "!! make test: SQLite suite and bench-quick passed, but the PostgreSQL + Redis stage did NOT run"; \
	else echo "make test: every stage passed (ruff, mypy, SQLite suite, PostgreSQL + Redis suite, bench-quick)"; fi

# The OpenAPI fuzz of `make test` (tests/test_openapi_fuzz.py: schemathesis over the whole schema, as a
# superuser and as a plain user) with more generated cases per operation; FUZZ_SEED=<n> explores
# other inputs (the default seed is the one `make test` uses).
FUZZ_MAX_EXAMPLES ?= 150
fuzz: install
	FUZZ_MAX_EXAMPLES=$(FUZZ_MAX_EXAMPLES) FUZZ_SEED=$(FUZZ_SEED) $(BIN)/pytest tests/test_openapi_fuzz.py -p no:cacheprovider -o timeout=0 -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Benchmarks against real daphne processes on throwaway databases (SQLite; PostgreSQL + Redis when
# reachable). bench-quick: every benchmark at small sizes (< 3 min); fails only if one crashes.
.PHONY: bench-quick
bench: install
	$(BIN)/python bench/run.py

bench-quick: install
	$(BIN)/python bench/run.py --quick

clean:
	rm -rf $(VENV) db.sqlite3* .test_db.*sqlite3* staticfiles
