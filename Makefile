# perpchain build and run targets. Every target is idempotent: stamps and the
# cached CometBFT binary make a second run a no-op.
SHELL := /bin/bash
# Go is needed to build CometBFT; Debian-style installs keep it outside the default PATH.
export PATH := $(PATH):/usr/local/go/bin
PY_SYS ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
COMETBFT_VERSION := v0.38.25
GOGOPROTO_VERSION := v1.7.0
# Built once per machine and shared by every clone (the build takes minutes on 2 cores).
CACHE_DIR ?= $(HOME)/.cache/perpchain
COMETBFT_CACHED := $(CACHE_DIR)/cometbft-$(COMETBFT_VERSION)/cometbft
BIN := bin
COMETBFT := $(BIN)/cometbft
COMETBFT_STAMP := $(BIN)/.cometbft-$(COMETBFT_VERSION)
GEN := gen
LOCALNET_DIR ?= .localnet
# The localnet's configuration (validators, base port, timeout_commit, genesis template, feed scenario, market maker):
# docs/localnet.md. VALIDATORS=N overrides its validator count when the localnet is created; MM=0 (or MM=1) overrides
# its [market_maker] enabled.
LOCALNET_CONFIG ?= localnet/localnet.toml
VALIDATORS ?=
MM ?=
# make mutation: what to mutate (app, a package such as app/prices, or a file such as app/store.py).
MODULE ?= app

.PHONY: all setup venv proto cometbft localnet localnet-down localnet-status test bench mutation clean

all: setup

setup: venv proto cometbft

venv: $(VENV)/.stamp
$(VENV)/.stamp: pyproject.toml
	test -x $(PY) || $(PY_SYS) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==24.3.1
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

proto: $(GEN)/.stamp
$(GEN)/.stamp: $(VENV)/.stamp scripts/gen_protos.py $(wildcard proto/perpchain/v1/*.proto)
	GOTOOLCHAIN=local $(PY) scripts/gen_protos.py --out $(GEN) --cometbft $(COMETBFT_VERSION) --gogoproto $(GOGOPROTO_VERSION)
	echo "$(CURDIR)/$(GEN)" > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/perpchain_gen.pth"
	touch $@

cometbft: $(COMETBFT_STAMP)
$(COMETBFT_STAMP):
	@mkdir -p $(BIN)
	@if [ ! -x $(COMETBFT_CACHED) ]; then \
	  echo "building cometbft $(COMETBFT_VERSION) with go install (first time on this machine: several minutes)"; \
	  GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN=$(dir $(COMETBFT_CACHED)) \
	    go install -trimpath github.com/cometbft/cometbft/cmd/cometbft@$(COMETBFT_VERSION); \
	fi
	@if [ ! -x $(dir $(COMETBFT_CACHED))abci-cli ]; then \
	  GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN=$(dir $(COMETBFT_CACHED)) \
	    go install -trimpath github.com/cometbft/cometbft/abci/cmd/abci-cli@$(COMETBFT_VERSION); \
	fi
	cp $(dir $(COMETBFT_CACHED))abci-cli $(BIN)/abci-cli
	cp $(COMETBFT_CACHED) $(COMETBFT)
	$(COMETBFT) version
	touch $@

localnet: setup
	$(VENV)/bin/perpd localnet up --dir $(LOCALNET_DIR) --config $(LOCALNET_CONFIG) \
	  $(if $(VALIDATORS),--validators $(VALIDATORS)) $(if $(filter 0,$(MM)),--no-mm) $(if $(filter 1,$(MM)),--mm)

localnet-status: setup
	$(VENV)/bin/perpd localnet status --dir $(LOCALNET_DIR)

localnet-down: setup
	$(VENV)/bin/perpd localnet down --dir $(LOCALNET_DIR)

test: setup
	$(VENV)/bin/lint-imports
	$(PY) -m pytest tests $(PYTEST_ARGS)

bench: setup
	$(PY) bench/localnet_tps.py

# Mutation testing (mutmut) of MODULE with the fast in-process tests; not part of `make test`.
# Work files go to .mutation/ (git-ignored). See docs/mutation.md.
mutation: setup
	$(PY) scripts/mutation.py $(MODULE) $(MUTATION_ARGS)

clean:
	rm -rf $(VENV) $(GEN) $(BIN) $(LOCALNET_DIR)
