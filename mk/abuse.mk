# Abuse checks: `loadgen abuse` (slowloris, big request heads, a flood among listeners, /echo
# clients that never read, bad handshakes, deeply nested JSON) against a fresh server on loopback.
# Each check prints what happened and its target; any miss fails the target. Details:
# loadgen/src/abuse.rs; the server's start and stop: scripts/abuse.sh.

.PHONY: abuse abuse-quick

abuse: ## Attack a fresh local server with default settings (slowloris, flood, hoarders, handshakes...); about a minute
	@# The server on its own, so that its dependencies' features are those of the deployed build.
	cargo build --release -p server
	cargo build --release -p loadgen
	scripts/abuse.sh target/release/websocket-server target/release/loadgen

# The short form: fewer sockets, a 7 s flood (it must outlast the 5 s a client may stay over the
# rate limit), and a 2 s HEADER_READ_TIMEOUT so that the slowloris sockets are closed sooner. Debug
# builds, which share their dependencies with `cargo test`: the targets hold for them too.
abuse-quick: ## The short form of make abuse, for CI (HEADER_READ_TIMEOUT=2s); about 30 s
	cargo build -p server
	cargo build -p loadgen
	HEADER_READ_TIMEOUT=2s scripts/abuse.sh target/debug/websocket-server target/debug/loadgen --quick
