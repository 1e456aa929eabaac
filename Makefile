# routine-load entry points. Build outputs live outside the checkout so a fresh clone reuses them.
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/routine-load/target
CARGO ?= cargo

.PHONY: help build test lint unit-test e2e-test crds bench bench-engine fmt demo demo-down

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

bench-engine: ## criterion benchmark of the load engine alone (Wikipedia rows as CSV, JSON and Avro; 50-column CSV rows)
	$(CARGO) bench --workspace --bench engine

.PHONY: bench-pipeline
bench-pipeline: ## end-to-end benchmark on the local testbed: Kafka ceiling, worker end to end, latency, operator scale (bench/results/)
	$(CARGO) bench --workspace --bench pipeline

bench: bench-engine bench-pipeline ## all benchmarks (not part of make test)

demo: ## the reference's Wikipedia quick start on a local control plane, from nothing (see README)
	bash e2e/testbed/demo.sh up

demo-down: ## stop the demo's operator and workers and uninstall the chart (the testbed stays up)
	bash e2e/testbed/demo.sh down

include e2e/testbed.mk

.PHONY: manifests
manifests: ## copy crds/ into the Helm chart and render manifests/install.yaml from it
	bash e2e/testbed/render-manifests.sh

.PHONY: chaos
chaos: testbed-up ## seeded fault campaign + exactly-once checker, long version (SEED, FAULTS=100, DURATION s; bench/results/chaos-<seed>.md)
	$(CARGO) build --workspace --all-targets
	source "$$(bash e2e/testbed/testbed.sh env)" && SEED=$${SEED:-42} FAULTS=$${FAULTS:-100} DURATION=$${DURATION:-1200} $(CARGO) test --workspace --test chaos -- --nocapture
