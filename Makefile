# routine-load entry points. Build outputs live outside the checkout so a fresh clone reuses them.
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/routine-load/target
CARGO ?= cargo

.PHONY: help build test lint unit-test e2e-test crds bench bench-engine fmt

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: ## build every crate
	$(CARGO) build --workspace --all-targets

fmt: ## format the code
	$(CARGO) fmt --all

# Every cargo invocation selects the whole workspace with all targets: selecting fewer packages
# changes feature unification and rebuilds the heavy dependencies (DataFusion, deltalake).
crds: ## regenerate crds/ from the Rust types
	$(CARGO) build --workspace --all-targets
	$(CARGO_TARGET_DIR)/debug/crdgen crds

lint: ## rustfmt and clippy, warnings are errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit-test: ## unit tests and the CRD drift check; testbed tests are skipped, visibly
	ROUTINE_LOAD_E2E=0 $(CARGO) test --workspace

e2e-test: testbed-up ## every test, including those against the real testbed
	source "$$(bash e2e/testbed/testbed.sh env)" && $(CARGO) test --workspace --no-fail-fast -- --test-threads=2

test: lint e2e-test ## the whole suite, as CI runs it

bench-engine: ## criterion benchmark of the load engine alone (Wikipedia rows, CSV and JSON)
	$(CARGO) bench --workspace --bench engine

bench: bench-engine ## all benchmarks (not part of make test)

include e2e/testbed.mk

.PHONY: manifests
manifests: ## copy crds/ into the Helm chart and render manifests/install.yaml from it
	bash e2e/testbed/render-manifests.sh
