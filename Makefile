# The two commands of the README. Both install what they need first.
UV := .tools/venv/bin/uv
RUN := $(UV) run --frozen --no-sync
ARGS ?=

.PHONY: serve test lint typecheck pytest bench bench-poll schema

serve:
	@scripts/bootstrap
	$(RUN) ucf serve $(ARGS)

test:
	@scripts/bootstrap --test
	$(RUN) ruff check src tests bench
	$(RUN) ruff format --check src tests bench
	$(RUN) mypy
	$(RUN) pytest $(ARGS)

bench:
	@scripts/bootstrap --bench
	$(RUN) python bench/mapping.py

bench-poll:
	@scripts/bootstrap --bench
	$(RUN) python bench/poll.py $(ARGS)

schema:
	@scripts/bootstrap
	$(RUN) ucf schema > schema/connector-descriptor.schema.json
