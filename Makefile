# The two commands of the README. Both install what they need first.
UV := .tools/venv/bin/uv
RUN := $(UV) run --frozen --no-sync
ARGS ?=
# The suite runs its files in parallel (pytest-xdist): most tests wait on
# subprocesses and servers, so 4 workers overlap that waiting even on 2 cores;
# worksteal lets an idle worker take tests a busy one has not started. Tests
# marked `serial` assert a time bound and run first, alone.
# `make test TEST_WORKERS=0` runs it in one process.
TEST_WORKERS ?= 4

.PHONY: serve sandbox test bench bench-mapping bench-store bench-poll bench-webhook bench-delivery bench-coldstart schema

serve:
	@scripts/bootstrap
	$(RUN) ucf serve $(ARGS)

sandbox:
	@scripts/bootstrap
	$(RUN) ucf sandbox $(ARGS)

test:
	@scripts/bootstrap --test
	$(RUN) ruff check src tests bench
	$(RUN) ruff format --check src tests bench
	$(RUN) mypy
	$(RUN) mypy tests  # the tests too, with the same strictness
	$(RUN) pytest -m serial $(ARGS) || [ $$? -eq 5 ]  # 5: ARGS selected no serial test
	$(RUN) pytest -n $(TEST_WORKERS) --dist worksteal -m "not serial" $(ARGS)

# Every benchmark, each printing its figures beside its peer's (see README).
bench: bench-mapping bench-store bench-poll bench-webhook bench-delivery bench-coldstart

bench-mapping:
	@scripts/bootstrap --bench
	$(RUN) python bench/mapping.py $(ARGS)

bench-store:
	@scripts/bootstrap --bench
	$(RUN) python bench/store.py $(ARGS)

bench-poll:
	@scripts/bootstrap --bench
	$(RUN) python bench/poll.py $(ARGS)

bench-webhook:
	@scripts/bootstrap --bench
	$(RUN) python bench/webhook.py $(ARGS)

bench-delivery:
	@scripts/bootstrap --bench
	$(RUN) python bench/delivery.py $(ARGS)

bench-coldstart:
	@scripts/bootstrap --bench
	$(RUN) python bench/coldstart.py $(ARGS)

schema:
	@scripts/bootstrap
	$(RUN) ucf schema > schema/connector-descriptor.schema.json
	$(RUN) ucf schema --signal normalised > schema/normalised-signal.schema.json
	$(RUN) ucf schema --signal sanitised > schema/sanitised-signal.schema.json
