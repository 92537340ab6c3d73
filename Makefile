# Developer commands. `make` alone lists them.

SHELL := /bin/bash
CARGO ?= cargo
# Extra flags for `make bench`.
ARGS ?=

# Crates the pure engine must never depend on (see STYLE.md: the engine does no IO).
ENGINE_FORBIDDEN := tokio|tonic|tokio-postgres|rondo-gen

.DEFAULT_GOAL := help
.PHONY: help run test gen lint fmt ci bench

help: ## List the targets
	@awk 'BEGIN { FS = ":.*## " } /^[a-z]+:.*## / { printf "  make %-6s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

run: ## Start PostgreSQL, the server, the example worker and an example workflow (Ctrl-C stops all)
	@scripts/run.sh

test: ## Run every test; without RONDO_DATABASE_URL they start a throwaway PostgreSQL
	$(CARGO) test --workspace

gen: ## Regenerate gen/ from proto/
	RONDO_REGEN=1 $(CARGO) test -p rondo-gen --test codegen

lint: ## Check formatting, clippy warnings and that the engine stays pure
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@deps=$$($(CARGO) tree -p rondo-engine -e normal --prefix none --format '{p}') || exit 1; \
	bad=$$(awk '{ print $$1 }' <<<"$$deps" | grep -xE '$(ENGINE_FORBIDDEN)' | sort -u); \
	if [[ -n $$bad ]]; then \
		echo "rondo-engine must not depend on: $$(echo $$bad)" >&2; exit 1; \
	fi; \
	echo "rondo-engine depends on none of: $(ENGINE_FORBIDDEN)"

fmt: ## Format all code
	$(CARGO) fmt --all

ci: lint test ## What CI runs: lint, then test

bench: ## Run the load benchmark, release build (flags: make bench ARGS="--help")
	$(CARGO) run --release -p rondo-bench -- $(ARGS)
