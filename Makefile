# Sluice — the two commands: `make demo` and `make test`. Everything else is optional.
# Configuration for `make up` comes from the environment or the command line, e.g.
#   make up QUOTA_WINDOW_SECONDS=60 BATCH_LIMIT_PER_HOUR=5

.PHONY: demo test up down drain status watch lint fmt bench bench-localstack build

demo: ## Everything from a fresh machine: LocalStack, stack, emulator, functions, sample traffic.
	infra/local/demo

test: ## Unit tests, then LocalStack and the integration tests.
	infra/test

up: ## The local stack, left running (writes .sluice/local.env).
	infra/local/up

down: ## Stop everything `make up` started.
	infra/local/down

drain: ## One drain run against the local stack now; prints the drain's JSON summary.
	@infra/local/sluice drain --once --json

status: ## `sluice status` for the local stack.
	@infra/local/sluice status

watch: ## The functions under `cargo lambda watch` (the Lambda runtime path) on WATCH_PORT (default 9001).
	infra/local/watch

lint: ## What CI checks besides the tests.
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	infra/check-features
	infra/lint-template

fmt:
	cargo fmt --all

build: ## Release Lambda zips (x86_64 here; arm64 is the deployment default, see README).
	infra/tools/install lambda
	. infra/tools/env && cargo lambda build --release --output-format zip

bench: ## Simulated days (Sluice vs the baselines) -> BENCHMARKS.md tables and docs/bench/*.svg.
	cargo run -p sluice-sim --release --bin sluice-sim -- --write

bench-localstack: ## Drain on LocalStack, cold start/RSS and sizes of the release functions -> BENCHMARKS.md.
	infra/localstack/up
	infra/tools/install lambda
	. infra/tools/env && cargo lambda build --release --x86-64 --output-format zip -p ingest -p drain
	cargo run -p sluice-sim --release --bin sluice-bench -- --write
