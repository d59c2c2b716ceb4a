#!/usr/bin/env python3
"""`make bench`: the fixed benchmark matrix, on loopback, against our server and three references.

Every case starts a fresh server process, runs `loadgen` against it with `--server-pid` (so the
server's CPU time and memory are read from /proc), and stops the server. The servers:

- ours: `websocket-server` as deployed (metrics port, info logs to a file, every feature on);
- lean: `lean-reference`, a hand-written tokio-tungstenite server (bench/lean-reference);
- node: the replaced design's stack, express + ws (bench/node-reference);
- bun: the fastest JavaScript stack, Bun.serve (uWebSockets) with its native topic publish
  (bench/bun-reference), run by the Bun binary npm installs there;
- ours-1t: ours with WORKER_THREADS=1, one thread serving connections as Bun and Node do: the
  load generator shares this machine's two cores, so the default's second thread mostly competes
  with it; the targets are held against ours.

The backplane case runs ours alone, alone with Redis, and as two processes sharing one Redis. The
channels case (`/v1/ws`) runs ours only: the references have no channels. The scale case holds as
many idle connections to ours as one process may open here (19,000), through two heartbeat rounds.
Results go to .artifacts/bench/results.json (a partial run's to results-partial.json) and between
the markers in BENCHMARKS.md, with the machine, the commands and the performance targets. `make
bench` builds everything first; this script only checks that the binaries are there.
"""

import argparse
import datetime
import json
import math
import os
import platform
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "target" / "release"
LOADGEN = RELEASE / "loadgen"
ARTIFACTS = ROOT / ".artifacts" / "bench"
REPORT = ROOT / "BENCHMARKS.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"

SERVERS = ("ours", "lean", "node", "bun", "ours-1t")
BUN_REFERENCE = ROOT / "bench" / "bun-reference"
# The Linux x64 build from npm (@oven/bun-linux-x64), pinned in bench/bun-reference/package-lock.json,
# rather than whatever `bun` is on the PATH: every machine measures the same version.
BUN = BUN_REFERENCE / "node_modules" / "@oven" / "bun-linux-x64" / "bin" / "bun"


class Case:
    """One row of the matrix: a loadgen scenario and its arguments."""

    def __init__(self, key, title, args, primary, higher_is_better=True, limits=None, path="/wss"):
        self.key, self.title, self.args = key, title, args
        self.primary, self.higher_is_better = primary, higher_is_better
        # Settings of our server for this case; None keeps the defaults.
        self.limits = limits or {}
        self.path = path


# A sender at full speed is, by design, over the default inbound rate limit (100 messages/s): the
# full-speed cases measure the fan-out with the limits off, as a deployment that trusts its
# publishers would run it. The steady case runs with the defaults on, so their cost is measured.
UNLIMITED = {"MAX_MESSAGES_PER_SECOND": "0", "MAX_BYTES_PER_SECOND": "0"}


CASES = [
    Case("broadcast_full", "Broadcast at full speed: C=100 clients, S=10 senders, M=5,000 messages each, B=128 bytes (5,000,000 deliveries)",
         ["broadcast", "-c", "100", "-s", "10", "-m", "5000", "-b", "128"], "deliveries_per_s", limits=UNLIMITED),
    # M=1,000 rather than the 200: 400,000 deliveries took a third of a second, too short
    # to tell the servers apart from the noise.
    Case("broadcast_wide", "Broadcast at full speed to many clients: C=1,000, S=2, M=1,000, B=128 (2,000,000 deliveries)",
         ["broadcast", "-c", "1000", "-s", "2", "-m", "1000", "-b", "128"], "deliveries_per_s", limits=UNLIMITED),
    Case("broadcast_steady", "Broadcast at a steady 50,000 deliveries/s: C=100, S=10 at 50 messages/s each, M=500, B=128",
         ["broadcast", "-c", "100", "-s", "10", "-m", "500", "-b", "128", "-r", "50"], "p99_ms", higher_is_better=False),
    Case("idle", "Idle: N=10,000 connections opened and held",
         ["idle", "-n", "10000", "--hold", "2s"], "server_bytes_per_connection", higher_is_better=False),
    Case("churn", "Churn: 50 clients at once connect, read the greeting and close, for 10 s",
         ["churn", "-k", "50", "--duration", "10s"], "handshakes_per_s"),
]
BACKPLANE = Case("backplane", "Backplane: the full-speed broadcast (C=100, S=10, M=5,000, B=128), clients spread over the processes",
                 ["broadcast", "-c", "100", "-s", "10", "-m", "5000", "-b", "128"], "deliveries_per_s", limits=UNLIMITED)
# Every message reaches 10 of the 10,000 clients, so each delivery is a frame of its own (broadcast
# writes many per wake-up): deliveries/s is far below broadcast's. M=5,000 keeps the sending near
# 4 s on two cores, after about 2 s of connecting and subscribing.
# As many idle connections to one process as this machine allows: its hard open-file limit is
# 20,000 per process (19,000 connections, 256 sockets in the HTTP phase and the server's own files
# fit), with the default heartbeat running for two rounds (PING_INTERVAL 30 s). The connections come
# from four loopback source addresses: one has about 28,000 ephemeral ports toward the server's
# port, and the previous run's sockets linger in TIME_WAIT for a minute.
SCALE_CONNECTIONS = 19_000
SCALE = Case("scale", f"Scale: N={SCALE_CONNECTIONS:,} idle connections to one process, held 65 s with the default heartbeat",
             ["idle", "-n", str(SCALE_CONNECTIONS), "--hold", "65s",
              *[arg for n in range(2, 6) for arg in ("--source-address", f"127.0.0.{n}")]],
             "server_bytes_per_connection", higher_is_better=False,
             limits={"MAX_CONNECTIONS": str(SCALE_CONNECTIONS), "MAX_HTTP_CONNECTIONS": "256"})
CHANNELS = Case("channels", "Channels: C=10,000 clients over 1,000 channels (10 subscribers each), S=10 senders, "
                "M=5,000 messages each round robin over the channels, B=128 (500,000 deliveries)",
                ["channels", "-c", "10000", "--channels", "1000", "-s", "10", "-m", "5000", "-b", "128"],
                "deliveries_per_s", limits=UNLIMITED, path="/v1/ws")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, process, what, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"bench: {what} exited with {process.returncode} before listening (see {ARTIFACTS})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"bench: {what} did not listen on {port} within {timeout} s")


class Process:
    """A background process with its output in a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name, argv, env, port):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.log = open(ARTIFACTS / f"{name}.log", "ab")
        self.proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid
        wait_for_port(port, self.proc, name)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def start_server(kind, redis_url=None, limits=None, path="/wss"):
    port = free_port()
    env = {"HOST": "127.0.0.1", "PORT": str(port)}
    if kind in ("ours", "ours-1t"):
        env.update(METRICS_PORT=str(free_port()), MAX_CONNECTIONS="18000", LOG_LEVEL="info", LOG_FORMAT="json")
        if kind == "ours-1t":
            env["WORKER_THREADS"] = "1"
        env.update(limits or {})
        if redis_url:
            env["REDIS_URL"] = redis_url
        argv = [str(RELEASE / "websocket-server")]
    elif kind == "lean":
        argv = [str(RELEASE / "lean-reference")]
    elif kind == "bun":
        argv = [str(BUN), str(BUN_REFERENCE / "server.js")]
    else:
        argv = ["node", str(ROOT / "bench" / "node-reference" / "server.js")]
    return Process(kind, argv, env, port), f"ws://127.0.0.1:{port}{path}"


def loadgen(args, urls, pids):
    argv = [str(LOADGEN), *args, "--json"]
    for url in urls:
        argv += ["--url", url]
    for pid in pids:
        argv += ["--server-pid", str(pid)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if done.returncode not in (0, 1) or not done.stdout.strip():
        sys.exit(f"bench: loadgen failed ({done.returncode}): {' '.join(argv)}\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["exit_code"] = done.returncode
    return result


def primary(result, case):
    if case.primary == "p99_ms":
        return result["latency"]["p99_ms"]
    return result[case.primary]


def median_run(case, runs):
    """The run whose primary figure is the median of the repeats, with every repeat under
    `repeats` (in the order they ran): the targets pair each round's runs, and a loss in any run
    shows."""
    ordered = sorted(runs, key=lambda run: primary(run, case))
    return dict(ordered[len(ordered) // 2], repeats=runs)


def repeats_of(result):
    """Every run behind a result (results saved before runs were kept hold only the median)."""
    return result.get("repeats", [result])


def say_if_unclean(medians):
    """Names, on the console, the servers (or setups) with a run that lost, duplicated or failed
    something, whichever run was the median."""
    unclean = [f"{name} {sum(run['exit_code'] != 0 for run in repeats_of(result))} of {len(repeats_of(result))} runs"
               for name, result in medians.items() if any(run["exit_code"] != 0 for run in repeats_of(result))]
    if unclean:
        print(f"  NOT CLEAN: {', '.join(unclean)}", flush=True)


def in_turn(items, round_number):
    """The round's running order: each round starts one place further along, so that no server
    always runs first or always follows the same one, and whatever a run leaves behind (sockets in
    TIME_WAIT, a warm page cache, a CPU still busy with the last run's exit) falls on each alike."""
    items = list(items)
    start = round_number % len(items)
    return items[start:] + items[:start]


def run_case(case, kinds, repeat):
    """Every server once per round, round after round, so that a target's ratio pairs runs made
    moments apart."""
    runs = {kind: [] for kind in kinds}
    for round_number in range(repeat):
        for kind in in_turn(kinds, round_number):
            server, url = start_server(kind, limits=case.limits, path=case.path)
            try:
                runs[kind].append(loadgen(case.args, [url], [server.pid]))
            finally:
                server.stop()
    medians = {kind: median_run(case, runs[kind]) for kind in kinds}
    for kind, result in medians.items():
        print(f"  {kind:7} {summary(case, result)}", flush=True)
    say_if_unclean(medians)
    return medians


def run_backplane(repeat):
    redis_port = free_port()
    redis = Process("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"], {}, redis_port)
    redis_url = f"redis://127.0.0.1:{redis_port}"
    # The two-process column first: the ratios compare it with the single process.
    setups = {"2 processes + Redis": (2, redis_url), "1 process + Redis": (1, redis_url),
              "1 process, no Redis": (1, None)}
    runs = {label: [] for label in setups}
    try:
        for round_number in range(repeat):
            for label in in_turn(setups, round_number):
                processes, url = setups[label]
                servers = [start_server("ours", url, BACKPLANE.limits) for _ in range(processes)]
                try:
                    runs[label].append(loadgen(BACKPLANE.args, [u for _, u in servers], [s.pid for s, _ in servers]))
                finally:
                    for server, _ in servers:
                        server.stop()
    finally:
        redis.stop()
    results = {label: median_run(BACKPLANE, label_runs) for label, label_runs in runs.items()}
    for label, result in results.items():
        print(f"  {label:22} {summary(BACKPLANE, result)}", flush=True)
    say_if_unclean(results)
    return results


def summary(case, result):
    clean = "clean" if result["exit_code"] == 0 else f"NOT CLEAN (exit {result['exit_code']}: {result.get('first_error')})"
    if result["scenario"] in ("broadcast", "channels"):
        return (f"{result['deliveries_per_s']:,.0f} deliveries/s, p99 {result['latency']['p99_ms']:.2f} ms, "
                f"server CPU {result['usage']['server_cpu_s']:.2f} s, lost {result['lost']}, dup {result['duplicated']}, {clean}")
    if result["scenario"] == "idle":
        idle_cpu = result.get("server_idle_cpu_per_s")
        idle = "" if idle_cpu is None else f", idle CPU {idle_cpu * 1000:.2f} ms/s"
        return (f"{result['server_bytes_per_connection']:,.0f} B/connection, {result['handshakes_per_s']:,.0f} handshakes/s"
                f"{idle}, {clean}")
    return f"{result['handshakes_per_s']:,.0f} handshakes/s, p99 {result['handshake_latency']['p99_ms']:.2f} ms, {clean}"


# ---- the report -------------------------------------------------------------------------------

def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), platform.machine())
    mem_kib = int(re.search(r"MemTotal:\s+(\d+)", open("/proc/meminfo").read()).group(1))

    def version(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True).stdout.strip().splitlines()[0]
        except (OSError, IndexError):
            return "unknown"

    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_kib / 1048576, 1),
        "kernel": platform.release(), "rustc": version(["rustc", "--version"]),
        "node": version(["node", "--version"]), "bun": version([str(BUN), "--version"]),
        "redis": version(["redis-server", "--version"]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def fmt(value, unit=""):
    if value is None:
        return "n/a"
    if isinstance(value, float) and value < 100:
        return f"{value:.2f}{unit}"
    return f"{value:,.0f}{unit}"


def shown(value, at_least):
    """A target's figure, rounded toward missing it (down for an "at least", up for an "at
    most"), ratios to three decimals: a figure that misses never prints as the bound."""
    if value is None:
        return "n/a"
    digits = 3 if value < 10 else 0
    scaled = value * 10**digits
    rounded = (math.floor(scaled) if at_least else math.ceil(scaled)) / 10**digits
    return f"{rounded:,.{digits}f}"


def ratio(a, b):
    return a / b if a is not None and b else None


def ns_per_delivery(result):
    """Server CPU time per delivered message, in nanoseconds: the server's own cost, whatever share
    of the two cores the load generator took."""
    delivered = result.get("delivered") or 0
    return result["usage"]["server_cpu_s"] * 1e9 / delivered if delivered else None


def cores_busy(result):
    """The share of the machine's cores the server and the load generator kept busy together:
    near 100 %, the pair is bound by the machine, and a server's figures move with the CPU it
    leaves the load generator."""
    cores = os.cpu_count() or 1
    usage = result["usage"]
    return cores, (usage["server_cpu_s"] + usage["loadgen_cpu_s"]) / (cores * result["seconds"]) * 100


def rows_for(result):
    """The figures of one result, as (label, value, unit)."""
    usage = result["usage"]
    if result["scenario"] in ("broadcast", "channels"):
        cores, busy = cores_busy(result)
        lat = result["latency"]
        rows = [("deliveries/s", result["deliveries_per_s"], ""), ("latency p50", lat["p50_ms"], " ms"),
                ("latency p90", lat["p90_ms"], " ms"), ("latency p99", lat["p99_ms"], " ms"),
                ("latency max", lat["max_ms"], " ms"), ("server CPU", usage["server_cpu_s"], " s"),
                ("server CPU per delivery", ns_per_delivery(result), " ns"),
                ("load generator CPU", usage["loadgen_cpu_s"], " s"),
                (f"the {cores} cores busy with server and load generator", busy, " %"),
                ("delivered / expected", f"{result['delivered']:,} / {result['expected_deliveries']:,}", ""),
                ("lost / duplicated / errors", f"{result['lost']} / {result['duplicated']} / {result['errors']}", "")]
        if result["scenario"] == "channels":
            rows += [("clients subscribed / clients", f"{result['connected']:,} / {result['clients']:,}", ""),
                     ("connecting and subscribing them", result["subscribe_seconds"], " s")]
        return rows
    if result["scenario"] == "idle":
        idle_cpu = result.get("server_idle_cpu_per_s")
        return [("server bytes per idle connection", result["server_bytes_per_connection"], " B"),
                ("handshakes/s (opening them all)", result["handshakes_per_s"], ""),
                ("time to open them all", result["connect_seconds"], " s"),
                ("server RSS with all open", usage["server_rss_bytes"] / 1048576, " MiB"),
                (f"server CPU while held, per second (over {result.get('idle_seconds', 0):.0f} s)",
                 None if idle_cpu is None else idle_cpu * 1000, " ms"),
                ("connected / errors", f"{result['connected']:,} / {result['errors']}", "")]
    lat = result["handshake_latency"]
    cores, busy = cores_busy(result)
    return [("handshakes/s", result["handshakes_per_s"], ""), ("handshake p50", lat["p50_ms"], " ms"),
            ("handshake p99", lat["p99_ms"], " ms"), ("server CPU", usage["server_cpu_s"], " s"),
            ("server CPU per handshake", usage["server_cpu_s"] / result["handshakes"] * 1e6, " µs"),
            ("load generator CPU", usage["loadgen_cpu_s"], " s"),
            (f"the {cores} cores busy with server and load generator", busy, " %"),
            ("handshakes / errors", f"{result['handshakes']:,} / {result['errors']}", "")]


def table(columns, results):
    """A markdown table: one row per figure, one column per server, then ours/other ratios."""
    others = [c for c in columns if c != columns[0]]
    head = "| | " + " | ".join(columns + [f"{columns[0]} ÷ {o}" for o in others]) + " |"
    lines = [head, "|---" * (1 + len(columns) + len(others)) + "|"]
    per_column = [rows_for(results[c]) for c in columns]
    for i, (label, _, unit) in enumerate(per_column[0]):
        values = [rows[i][1] for rows in per_column]
        cells = [v if isinstance(v, str) else fmt(v, unit) for v in values]
        ratios = ["" if isinstance(values[0], str) else fmt(ratio(values[0], v), "×") for v in values[1:]]
        lines.append(f"| {label} | " + " | ".join(cells + ratios) + " |")
    return "\n".join(lines)


def targets(results, backplane):
    """The performance targets the server is held to (each a ratio to a reference server or a
    budget), each with its figure round by round (in each round the servers run one after
    another, so a ratio pairs runs made moments apart): the median, which the verdict is on, the
    range, and how many rounds met it. A target met in some rounds and missed in others is inside
    this machine's run-to-run spread."""
    def get(path):
        def value(result):
            for key in path.split("."):
                result = result[key]
            return result
        return value

    def of(case, server, figure):
        return lambda run: figure(run(case, server))

    def versus(case, figure, other):
        return lambda run: ratio(figure(run(case, "ours")), figure(run(case, other)))

    deliveries, p99, cpu = get("deliveries_per_s"), get("latency.p99_ms"), get("usage.server_cpu_s")
    checks = [
        ("broadcast_full: server CPU per delivery ≤ 0.75 × lean", versus("broadcast_full", ns_per_delivery, "lean"), 0.75, False),
        ("broadcast_full: deliveries/s ≥ 1.0 × lean", versus("broadcast_full", deliveries, "lean"), 1.0, True),
        ("broadcast_full: deliveries/s ≥ 1.0 × bun", versus("broadcast_full", deliveries, "bun"), 1.0, True),
        ("broadcast_wide: server CPU per delivery ≤ 1.0 × lean", versus("broadcast_wide", ns_per_delivery, "lean"), 1.0, False),
        ("broadcast_wide: deliveries/s ≥ 1.0 × lean", versus("broadcast_wide", deliveries, "lean"), 1.0, True),
        ("broadcast_steady: p99 ≤ 1.0 × lean", versus("broadcast_steady", p99, "lean"), 1.0, False),
        ("broadcast_steady: server CPU ≤ 1.0 × bun", versus("broadcast_steady", cpu, "bun"), 1.0, False),
        ("idle: ≤ 2,048 B per connection at 10,000", of("idle", "ours", get("server_bytes_per_connection")), 2048, False),
    ]
    if SCALE.key in results:
        checks.append((f"idle: ≤ 2,048 B per connection at {SCALE_CONNECTIONS:,}",
                       of(SCALE.key, "ours", get("server_bytes_per_connection")), 2048, False))
    handshakes = get("handshakes_per_s")
    checks.append(("churn: handshakes/s ≥ 3 × node", versus("churn", handshakes, "node"), 3, True))
    checks.append(("churn: handshakes/s ≥ 1.0 × lean", versus("churn", handshakes, "lean"), 1.0, True))
    by_case = dict(results)
    if backplane:
        by_case["backplane"] = dict(backplane)
        checks.append(("backplane, two processes: ≥ 1,500,000 deliveries/s",
                       of("backplane", "2 processes + Redis", deliveries), 1_500_000, True))

    every_result = [result for by_server in by_case.values() for result in by_server.values()]
    # Results saved before every run was kept have only the median runs, so one "round" of those.
    kept = all("repeats" in result for result in every_result)
    rounds = [lambda case, server, i=i: repeats_of(by_case[case][server])[i]
              for i in range(min(len(repeats_of(result)) for result in every_result))]

    def met(value, bound, at_least):
        return value is not None and (value >= bound if at_least else value <= bound)

    lines = ["| Target | Measured (median of rounds) | Rounds: range | Rounds met | Met |", "|---|---|---|---|---|"]
    for label, measure, bound, at_least in checks:
        per_round = [measure(run) for run in rounds]
        known = sorted(v for v in per_round if v is not None)
        value = known[len(known) // 2] if len(known) == len(per_round) else None
        spread = f"{shown(known[0], at_least)}–{shown(known[-1], at_least)}" if kept and known else "—"
        rounds_met = f"{sum(met(v, bound, at_least) for v in per_round)} of {len(per_round)}" if kept else "—"
        lines.append(f"| {label} | {shown(value, at_least)} | {spread} | {rounds_met} | "
                     f"{'yes' if met(value, bound, at_least) else '**no**'} |")
    runs = [(f"{case}/{server}", run) for case, by_server in by_case.items() for server, result in by_server.items()
            for run in repeats_of(result)]
    unclean = sorted({name for name, run in runs if run["exit_code"] != 0})
    clean = sum(run["exit_code"] == 0 for _, run in runs)
    lines.append(f"| nothing lost, duplicated or failed, every run of every case and server | "
                 f"{'all clean' if not unclean else 'not clean: ' + ', '.join(unclean)} | | "
                 f"{clean} of {len(runs)} {'runs' if kept else 'median runs'} clean | {'yes' if not unclean else '**no**'} |")
    return "\n".join(lines)


def projection(result, connections=100_000):
    """What `connections` idle connections would take on one task, scaled from the scale case."""
    per_connection = result["server_bytes_per_connection"]
    held = result["connected"]
    baseline = result["usage"]["server_rss_bytes"] - per_connection * held
    memory_mib = (baseline + per_connection * connections) / 1048576
    cpu = result["server_idle_cpu_per_s"] * connections / held
    open_s = connections / result["handshakes_per_s"]
    return (f"Projected for {connections:,} idle connections on one task, linearly from these figures: "
            f"{memory_mib:,.0f} MiB of memory ({baseline / 1048576:,.0f} MiB at start plus "
            f"{per_connection:,.0f} B each), {cpu * 100:.1f} % of one core for the heartbeat, and "
            f"{open_s:,.0f} s to accept them all at this rate (this machine's two cores, shared with the load generator). "
            "The README's sizing advice turns this into task sizes.")


def settings(case):
    """The line saying how our server was configured for `case`, if not by default."""
    if not case.limits:
        return ""
    env = " ".join(f"{name}={value}" for name, value in case.limits.items())
    unlimited = " (inbound rate limits off)" if all(case.limits.get(k) == v for k, v in UNLIMITED.items()) else ""
    return f"Our server with `{env}`{unlimited}. "


def render(results, backplane, info, repeat):
    out = [BEGIN, "", f"Measured {info['date']} by `make bench` (median of {repeat} run{'s' if repeat > 1 else ''} "
           "per figure; a fresh server process per run). The tables show each server's median run; a target's figure is "
           "the median of its rounds (each round runs every server once, each round starting with the next server, so a ratio pairs runs made moments apart and no server always runs first), "
           "beside its range over the rounds and how many of them met it.", "",
           f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, Linux {info['kernel']}; "
           f"{info['rustc']}; Node {info['node']}; Bun {info['bun']}; {info['redis']}. The load generator runs on the same two cores "
           "as the server, so every figure is the pair's, and the load generator's CPU seconds are shown beside the "
           "server's.", "", "### Targets", "", targets(results, backplane), ""]
    for case in CASES:
        command = "loadgen " + " ".join(case.args) + " --url ws://127.0.0.1:PORT/wss --server-pid PID --json"
        out += [f"### {case.title}", "", settings(case) + f"`{command}`", "", table(list(SERVERS), results[case.key]), ""]
    if backplane:
        command = "loadgen " + " ".join(BACKPLANE.args) + " --url ws://127.0.0.1:PORT1/wss --url ws://127.0.0.1:PORT2/wss --server-pid PID1 --server-pid PID2 --json"
        out += [f"### {BACKPLANE.title}", "", settings(BACKPLANE) + f"`{command}`", "", table(list(backplane), backplane), ""]
    if SCALE.key in results:
        command = "loadgen " + " ".join(SCALE.args) + " --url ws://127.0.0.1:PORT/wss --server-pid PID --json"
        scale = results[SCALE.key]["ours"]
        out += [f"### {SCALE.title}", "", settings(SCALE) + f"`{command}`", "",
                "Our server only, at this machine's limit of open files per process.", "",
                table(["ours"], results[SCALE.key]), ""]
        if scale.get("server_idle_cpu_per_s") is not None and scale["connected"]:
            out += [projection(scale), ""]
    if CHANNELS.key in results:
        command = "loadgen " + " ".join(CHANNELS.args) + " --url ws://127.0.0.1:PORT/v1/ws --server-pid PID --json"
        out += [f"### {CHANNELS.title}", "", settings(CHANNELS) + f"`{command}`", "",
                "Our server only: the lean, Node and Bun references have no channels.", "",
                table(["ours"], results[CHANNELS.key]), ""]
    out.append(END)
    return "\n".join(out)


def write_report(section):
    text = REPORT.read_text() if REPORT.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        sys.exit(f"bench: {REPORT.name} lacks the markers {BEGIN} and {END}")
    before, rest = text.split(BEGIN, 1)
    after = rest.split(END, 1)[1]
    REPORT.write_text(before + section + after)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=int(os.environ.get("BENCH_REPEAT", "1")),
                        help="runs per figure, the median is kept (default: BENCH_REPEAT or 1)")
    parser.add_argument("--only", choices=[c.key for c in CASES] + ["backplane", CHANNELS.key, SCALE.key], action="append",
                        help="run only these cases and print them (BENCHMARKS.md is written only by a full run)")
    parser.add_argument("--server", choices=SERVERS, action="append",
                        help="run only against these servers (a partial run: BENCHMARKS.md unchanged)")
    parser.add_argument("--report-only", action="store_true",
                        help="write BENCHMARKS.md again from the last full run's results (after a change to the report)")
    options = parser.parse_args()
    if options.report_only:
        if not (ARTIFACTS / "results.json").exists():
            sys.exit(f"bench: {ARTIFACTS / 'results.json'} is missing: run `make bench` first")
        saved = json.loads((ARTIFACTS / "results.json").read_text())
        write_report(render(saved["cases"], saved["backplane"], saved["machine"], saved.get("repeat", options.repeat)))
        print(f"wrote {REPORT.relative_to(ROOT)} from {ARTIFACTS / 'results.json'}")
        return
    if options.repeat < 1:
        sys.exit("bench: --repeat must be at least 1")
    for binary in (LOADGEN, RELEASE / "websocket-server", RELEASE / "lean-reference"):
        if not binary.exists():
            sys.exit(f"bench: {binary} is missing: run `make bench`, which builds it")
    if not (ROOT / "bench" / "node-reference" / "node_modules").exists():
        sys.exit("bench: bench/node-reference/node_modules is missing: run `make bench`, which installs it")
    if not BUN.exists():
        sys.exit(f"bench: {BUN.relative_to(ROOT)} is missing: run `make bench`, which installs it")

    wanted = set(options.only or [c.key for c in CASES] + ["backplane", CHANNELS.key, SCALE.key])
    results, backplane = {}, None
    for case in CASES:
        if case.key in wanted:
            print(case.title, flush=True)
            results[case.key] = run_case(case, options.server or SERVERS, options.repeat)
    if "backplane" in wanted and (not options.server or "ours" in options.server):
        print(BACKPLANE.title, flush=True)
        backplane = run_backplane(options.repeat)
    if CHANNELS.key in wanted and (not options.server or "ours" in options.server):
        print(CHANNELS.title, flush=True)
        results[CHANNELS.key] = run_case(CHANNELS, ["ours"], options.repeat)
    if SCALE.key in wanted and (not options.server or "ours" in options.server):
        print(SCALE.title, flush=True)
        results[SCALE.key] = run_case(SCALE, ["ours"], options.repeat)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    partial = bool(options.only or options.server)
    # A partial run keeps its own file, so that --report-only still finds the last full run.
    saved = ARTIFACTS / ("results-partial.json" if partial else "results.json")
    saved.write_text(json.dumps({"machine": machine(), "cases": results, "backplane": backplane,
                                 "repeat": options.repeat}, indent=2))
    if partial:
        print(f"partial run: results in {saved}; BENCHMARKS.md unchanged")
        return
    write_report(render(results, backplane, machine(), options.repeat))
    print(f"wrote {REPORT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
