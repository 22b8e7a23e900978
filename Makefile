# The two commands: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# `make run` is for trying the server on this machine: debug on, no secret needed.
# Production runs uvicorn directly with DJANGO_DEBUG off (see docs/deployment.md).
RUN_ENV ?= DJANGO_DEBUG=$${DJANGO_DEBUG:-true}
# `manage.py serve` is the production command (docs/deployment.md): uvicorn with the slow-client defences of
# docs/security.md (classifier/management/commands/serve.py), so no way of starting the server can forget them.

.PHONY: install browser node run test check docs bench bench-peers bench-serving wrk schema clean image containers

# requirements.txt is requirements/dev.txt, which includes compile.txt, which includes serve.txt (the image's).
$(BIN)/.installed: requirements.txt requirements/serve.txt requirements/compile.txt requirements/dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

install: $(BIN)/.installed

# Debian's Chromium and ChromeDriver for the browser tests, installed with apt when missing.
browser:
	.ci/install-browser

# The TypeScript client check's npm packages (clients/typescript, pinned by its package-lock.json), where npm is.
node:
	@if command -v npm >/dev/null; then cd clients/typescript && npm ci --no-audit --no-fund --silent; fi

run: install
	$(RUN_ENV) $(BIN)/python manage.py migrate --noinput
	$(RUN_ENV) $(BIN)/python manage.py collectstatic --noinput --verbosity 0
	@echo ""
	@echo "aiserver is starting on http://$(HOST):$(PORT)/  (try it: /try/, docs: /api/docs/, admin: /admin/)"
	@echo "First prediction, in another terminal:"
	@echo "  KEY=\$$($(BIN)/python manage.py create_api_key --name me | tail -1)"
	@echo "  curl -s http://$(HOST):$(PORT)/api/v1/classify -H \"Authorization: Bearer \$$KEY\" -F file=@photo.jpg"
	@echo "or paste the key into http://$(HOST):$(PORT)/try/ and drop an image there."
	@echo "No network for the pretrained weights? Run: CLASSIFIER_WEIGHTS=random make run"
	@echo ""
	$(RUN_ENV) $(BIN)/python manage.py serve --host $(HOST) --port $(PORT)

test: install browser node
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Lint, format and types (settings in pyproject.toml); CI runs it before the tests. `ruff format .` fixes the format.
check: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The documentation site (mkdocs.yml, pages in docs/) into site/; strict, so a broken link or anchor fails.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The benchmark (docs/benchmarks.md): one run, a few minutes. BENCH_ARGS e.g. "--workers 2 --seconds 20".
bench: install wrk
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# The peers side by side (bench/peers): a minimal FastAPI server, LitServe and aiserver in interleaved rounds, medians.
# BENCH_PEERS_ARGS e.g. "--rounds 3 --seconds 15 --concurrency 16".
bench-peers: install wrk
	$(BIN)/python -m bench.peers.run $(BENCH_PEERS_ARGS)

# Serving processes with the model compiled: worker RSS for 1, 2 and 4 workers, start to ready, a command's start-up.
bench-serving: install
	$(BIN)/python -m bench.serving

# wrk, the HTTP load generator of the benchmark, from the system's packages when it is missing.
wrk:
	@command -v wrk >/dev/null || apt-get install -y -q wrk || (apt-get update -q && apt-get install -y -q wrk)

# The committed contract: docs/error-codes.md (every error code), docs/configuration.md (every setting), and the OpenAPI schema, docs/openapi.json: what /api/schema/ serves under the test settings and the
# default configuration (the tests compare the two). Refused when it breaks v1 (tests/contract/compat.py),
# unless ALLOW_V1_BREAK=1.
SCHEMA_ENV := env -u CLASSIFIER_MODELS -u CLASSIFIER_MODEL -u CLASSIFIER_TOP_K -u CLASSIFIER_MAX_TOP_K \
	-u CLASSIFIER_MAX_BATCH_IMAGES DJANGO_SETTINGS_MODULE=tests.settings
schema: install
	$(SCHEMA_ENV) $(BIN)/python manage.py spectacular --format openapi-json --file docs/openapi.json.new
	test -n "$(ALLOW_V1_BREAK)" || test ! -f docs/openapi.json \
		|| $(BIN)/python -m tests.contract.compat docs/openapi.json docs/openapi.json.new || (rm docs/openapi.json.new; exit 1)
	mv docs/openapi.json.new docs/openapi.json
	$(SCHEMA_ENV) $(BIN)/python manage.py shell --no-imports -c \
		'import sys; from classifier.api.exceptions import error_codes_markdown; sys.stdout.write(error_codes_markdown())' \
		> docs/error-codes.md
	$(SCHEMA_ENV) $(BIN)/python manage.py shell --no-imports -c \
		'import sys; from aiserver.settings import config; sys.stdout.write(config.reference_markdown())' \
		> docs/configuration.md

clean:
	rm -rf $(VENV) staticfiles site .pytest_cache
