# Benchmarks (bench), the deploy drill (deploy-drill) and the load test of a live deployment (loadtest). Details: BENCHMARKS.md.

.PHONY: bench bench-build deploy-drill loadtest

bench-build:
	@# The server on its own, so that its dependencies' features are those of the deployed build.
	cargo build --release -p server
	cargo build --release -p loadgen -p lean-reference
	@command -v node >/dev/null || { echo "node is missing: the Node reference needs Node 18+ (apt-get install nodejs npm)." >&2; exit 1; }
	@command -v redis-server >/dev/null || { echo "redis-server is missing: the backplane case needs it (apt-get install redis-server)." >&2; exit 1; }
	npm ci --prefix bench/node-reference --no-audit --no-fund --loglevel=error
	@# Bun itself, as an npm package: its Linux x64 binary, run from bench/bun-reference/node_modules.
	npm ci --prefix bench/bun-reference --no-audit --no-fund --loglevel=error

bench: bench-build ## Run the benchmark matrix against our server (also on one thread) and the three references (lean Rust, Node, Bun); writes BENCHMARKS.md (16 minutes with BENCH_REPEAT=3 on 2 cores)
	bench/run.py $(if $(BENCH_REPEAT),--repeat $(BENCH_REPEAT))

# What `make loadtest` does unless told otherwise: 1,000 clients for 5 minutes, 10 of them sending
# 10 messages a second each (100,000 deliveries a second at full fan-out).
CLIENTS  ?= 1000
SENDERS  ?= 10
RATE     ?= 10
DURATION ?= 5m
loadtest: ## Load a deployment: URL=wss://.../wss [CLIENTS=1000 SENDERS=10 RATE=10 DURATION=5m], live progress each second
	@[[ -n "$(URL)" ]] || { echo "URL is required, e.g. make loadtest URL=wss://d1234.cloudfront.net/wss (terraform output websocket_url)." >&2; exit 2; }
	cargo build --quiet --release -p loadgen
	target/release/loadgen broadcast --url '$(URL)' --clients $(CLIENTS) --senders $(SENDERS) --rate $(RATE) --duration $(DURATION) --progress

# The full deploy drill: 2,000 /v1/ws clients over 100 channels, 1,000 messages/s, DRAIN_SPREAD 20s
# (make test runs it at 200 clients, 10 channels, 3 s). Release build: a debug build of the two
# servers, the proxy and 2,000 clients on two cores cannot keep up, and the drill then measures
# that instead of the deploy.
DRILL_CLIENTS  ?= 2000
DRILL_CHANNELS ?= 100
DRILL_SPREAD   ?= 20
deploy-drill: tools ## A rolling deploy on loopback (2 servers, Redis, a round-robin proxy): SIGTERM one, every client resumes on the other; prints reconnects/s, the longest gap, lost and duplicated (about 7 minutes with the build)
	DRILL_CLIENTS=$(DRILL_CLIENTS) DRILL_CHANNELS=$(DRILL_CHANNELS) DRILL_SPREAD=$(DRILL_SPREAD) \
	  cargo nextest run --release -p server --run-ignored all -E 'binary(deploy_drill)' --no-capture
