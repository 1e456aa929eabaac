# Makefile fragment for the local testbed; the root Makefile includes it.
# Components are built/fetched once into ~/.cache/routine-load/<component>-<version>/.
TESTBED_DIR := $(dir $(lastword $(MAKEFILE_LIST)))testbed

.PHONY: testbed-prereqs testbed-build testbed-up testbed-down testbed-status testbed-env

testbed-prereqs:
	bash $(TESTBED_DIR)/install-prereqs.sh

testbed-build:
	bash $(TESTBED_DIR)/testbed.sh build

# With the schema registry the Avro tests use, unless ROUTINE_LOAD_SCHEMA_REGISTRY=0.
testbed-up:
	ROUTINE_LOAD_SCHEMA_REGISTRY=$${ROUTINE_LOAD_SCHEMA_REGISTRY:-1} bash $(TESTBED_DIR)/testbed.sh up

testbed-down:
	bash $(TESTBED_DIR)/testbed.sh down

testbed-status:
	bash $(TESTBED_DIR)/testbed.sh status

testbed-env:
	@bash $(TESTBED_DIR)/testbed.sh env
