"""Serving many tasks on one frozen backbone (`softmoa serve`): throughput, latency and resident
memory under concurrent clients on loopback (issue 22, item 3).

    PYTHONPATH=. .venv/bin/python benchmarks/serve_bench.py throughput   # 8 runs on the embedded backbone
    PYTHONPATH=. .venv/bin/python benchmarks/serve_bench.py throughput --backbone ast-base --requests 64 --seconds 25
    PYTHONPATH=. .venv/bin/python benchmarks/serve_bench.py memory       # 1 task against 8 on an AST-base

(the command lines of benchmarks/RESULTS.md, "Serving many tasks"; FSDD recordings from
``--fsdd``, default $SOFTMOA_FSDD or ../shared/data/fsdd/recordings beside the clone.)

The runs are written programmatically, not trained: the backbone's model folder, then per run
``build_model`` with the method, every trainable tensor drawn at random (adapters, LoRA pairs,
the norms feeding them, the final norm, the head; so that every task routes its own norms and
gives its own answers), ``save_adapter`` and the run folder (``runs/folder.py``). Training does
not change what serving costs, only the values of these tensors.

throughput
    Eight runs on the embedded backbone (128 wide, 4 blocks, 1 s windows; ``--backbone ast-base``:
    a random AST-base, as for memory), one method mix:
    adapter (Pfeiffer, parallel), adapter (sequential, FFN), Convpass, Soft-MoA, Soft-MoA
    (Houlsby), Dense-MoA, LoRA (q, v), linear probe. Three servers (``softmoa serve ... --host
    127.0.0.1 --port 0``, subprocesses) run side by side: (a) one task (the Soft-MoA run), (b)
    the eight tasks, (c) the eight tasks with ``--max-batch 1`` (batching off). Each round drives
    every scenario once, in a rotating order (the rounds interleave, so a change of the machine's
    load falls on every scenario): ``--concurrency`` client threads (keep-alive HTTP/1.1, raw
    bodies) post FSDD clips (real speech, 8 kHz WAVs) round-robin over the scenario's tasks,
    until ``--requests`` are answered or ``--seconds`` have passed. Reported: clips/s (median of
    the rounds), p50/p99 latency (all rounds' requests), the server's RSS after loading and at
    the end, and the per-round ratios against the targets (mixed >= 0.85x one task; batching
    >= 1.5x one request at a time).

memory
    A random AST-base backbone (768 wide, 12 blocks, 12 heads, MLP 3072; ``--max-length``
    frames) saved as a softmoa model folder, and eight runs on it (the same method mix; random
    tensors: training AST-base on 2 CPU cores takes hours). One server with the first run, then
    one with all eight, one after the other: RSS (VmRSS, and its anonymous and file-backed
    parts) once listening, and after ``--warm-requests`` requests of FSDD clips over its tasks
    (allocator growth); VmHWM, the peak. Eight separate one-task servers are estimated as 8x the
    one-task RSS, and as 8x its anonymous part plus its file-backed part once (shared library
    pages are shared between processes).

Both subcommands are bounded in requests and wall time and stop every server they start (SIGTERM,
then SIGKILL) in ``finally``. The clients run in this process, on the same cores as the server:
clips/s is the whole loop's.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from helpers import random_run  # noqa: E402  (the tests' runs with random trained tensors, one writer for both)
FSDD = Path(os.environ.get("SOFTMOA_FSDD") or ROOT.parent / "shared" / "data" / "fsdd" / "recordings")
MiB = 2**20
RANDOM_RUN = "(random tensors: benchmarks/serve_bench.py, seed {})"  # the runs' recorded command

# name -> method config: the eight tasks, every built-in way of placing a task's parts
METHODS = {
    "adapter": {"name": "adapter"},
    "adapter_seq": {"name": "adapter", "placement": "sequential", "location": "ffn"},
    "convpass": {"name": "adapter", "kind": "convpass"},
    "soft": {"name": "soft", "experts": 7, "slots": 1},
    "soft_houlsby": {"name": "soft", "experts": 4, "adapter_config": "houlsby"},
    "dense": {"name": "dense", "experts": 7},
    "lora": {"name": "lora", "rank": 8, "targets": ["q", "v"]},
    "linear": {"name": "linear"},
}


# ------------------------------------------------------------------ runs, written programmatically

def ast_base_backbone(folder: Path, max_length: int) -> Path:
    """A random AST-base (no head) saved as a softmoa model folder."""
    from softmoa_cli.engine.models.ast import AST, ASTConfig
    from softmoa_cli.engine.models.pretrained import Pretrained, save_model
    from softmoa_cli.engine.task import SINGLE

    torch.manual_seed(0)
    model = AST(ASTConfig(dim=768, depth=12, heads=12, mlp_dim=3072, max_length=max_length, num_classes=1,
                          pool="cls_dist", head_norm=True, eps=1e-6))
    return save_model(Pretrained(model, [], SINGLE, "random AST-base", {"has_head": False}), folder)


def fsdd_clips(folder: Path, count: int, into: Path) -> list[tuple[str, bytes]]:
    """``count`` FSDD recordings of ``folder`` (spread over speakers and digits), copied to
    ``into``: (name, bytes)."""
    names = sorted(p.name for p in folder.glob("*.wav"))
    if not names:
        raise SystemExit(f"no FSDD recordings in {folder}; pass --fsdd /path/to/fsdd/recordings")
    chosen = names[::max(1, len(names) // count)][:count]
    into.mkdir(parents=True, exist_ok=True)
    clips = []
    for name in chosen:
        shutil.copy(folder / name, into / name)
        clips.append((name, (into / name).read_bytes()))
    return clips


# ------------------------------------------------------------------ the server, a subprocess

def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of the process, all its threads (/proc/PID/stat), seconds."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory(pid: int) -> dict:
    """The process's VmRSS, RssAnon, RssFile and VmHWM, bytes (/proc/PID/status)."""
    found = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                found[key] = int(value.split()[0]) * 1024
    return found


class Server:
    """``softmoa serve NAME=RUN... --host 127.0.0.1 --port 0 FLAGS``, a subprocess: ``url`` once
    listening; ``stop`` sends SIGTERM (SIGKILL after ``grace`` s)."""

    def __init__(self, runs: dict[str, Path], *flags: str, log: Path, start_timeout: float = 600):
        command = [sys.executable, "-c", "from softmoa_cli.cli.app import main; main()", "serve",
                   *(f"{name}={folder}" for name, folder in runs.items()),
                   "--host", "127.0.0.1", "--port", "0", *flags]
        env = os.environ | {"PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.log = open(log, "w")
        self.started = time.monotonic()
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        self.pid = self.process.pid
        self.url = self._wait_listening(start_timeout)
        self.load_seconds = time.monotonic() - self.started

    def _wait_listening(self, timeout: float) -> str:
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if selector.select(timeout=1):
                line = self.process.stdout.readline()
                if line.startswith("serving on "):
                    return line.split()[2]
                if not line and self.process.poll() is not None:
                    break
        self.stop()
        raise RuntimeError(f"the server did not start; see {self.log.name}")

    def stop(self, grace: float = 30) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


# ------------------------------------------------------------------ clients

def drive(url: str, tasks: list[str], clips: list[tuple[str, bytes]], concurrency: int, requests: int,
          seconds: float, pid: int | None = None) -> dict:
    """``concurrency`` threads, each on its own keep-alive connection, post clips round-robin
    over ``tasks`` until ``requests`` are answered or ``seconds`` have passed. Returns clips/s,
    the latencies (s) of the answered requests, the failures and (``pid``: the server's) the
    server's and the clients' CPU seconds per answered clip."""
    host = urlsplit(url)
    lock = threading.Lock()
    issued = [0]
    latencies: list[float] = []
    failures: list[str] = []
    start = time.perf_counter()
    deadline = start + seconds

    def client() -> None:
        connection = http.client.HTTPConnection(host.hostname, host.port, timeout=120)
        try:
            while True:
                with lock:
                    index = issued[0]
                    if index >= requests or time.perf_counter() > deadline:
                        return
                    issued[0] += 1
                task = tasks[index % len(tasks)]
                name, body = clips[(index // len(tasks)) % len(clips)]
                began = time.perf_counter()
                try:
                    connection.request("POST", f"/v1/tasks/{task}/predict?filename={name}", body=body,
                                       headers={"Content-Type": "application/octet-stream"})
                    answer = connection.getresponse()
                    text = answer.read()
                    ok = answer.status == 200 and json.loads(text)["predictions"]
                except (OSError, http.client.HTTPException, ValueError) as error:
                    connection.close()
                    connection = http.client.HTTPConnection(host.hostname, host.port, timeout=120)
                    ok, text = False, repr(error).encode()
                took = time.perf_counter() - began
                with lock:
                    if ok:
                        latencies.append(took)
                    else:
                        failures.append(text[:200].decode(errors="replace"))
        finally:
            connection.close()

    server_cpu, client_cpu = cpu_seconds(pid) if pid else 0.0, time.process_time()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    done = max(1, len(latencies))
    return {"clips_per_s": len(latencies) / wall, "seconds": wall, "latencies": latencies, "failures": failures,
            "server_cpu_per_clip": (cpu_seconds(pid) - server_cpu) / done if pid else None,
            "client_cpu_per_clip": (time.process_time() - client_cpu) / done}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))] if ordered else float("nan")


# ------------------------------------------------------------------ throughput

def throughput(args: argparse.Namespace, work: Path) -> dict:
    backbone = "embedded" if args.backbone == "embedded" else str(ast_base_backbone(work / "ast-base", 100))
    runs = {}
    for seed, (name, method) in enumerate(METHODS.items()):
        runs[name] = random_run(work / "runs" / name, method, seed, backbone, command=RANDOM_RUN.format(seed))
    clips = fsdd_clips(args.fsdd, args.clips, work / "clips")
    common = ["--max-wait-ms", str(args.max_wait_ms)]
    scenarios = {
        "a": ("one task", {"soft": runs["soft"]}, ["--max-batch", str(args.max_batch)]),
        "b": ("8 tasks, mixed", runs, ["--max-batch", str(args.max_batch)]),
        "c": ("8 tasks, mixed, batching off", runs, ["--max-batch", "1"]),
    }
    servers: dict[str, Server] = {}
    results = {key: {"title": title, "rounds": [], "cpu": [], "client_cpu": [], "latencies": [], "failures": 0}
               for key, (title, _, _) in scenarios.items()}
    load = [os.getloadavg()]
    try:
        for key, (title, served, flags) in scenarios.items():
            servers[key] = Server(served, *flags, *common, log=work / f"server-{key}.log")
            results[key]["rss_loaded"] = memory(servers[key].pid)
            warm = drive(servers[key].url, list(served), clips, args.concurrency, 2 * args.concurrency, 120)
            results[key]["failures"] += len(warm["failures"])
            print(f"{key}: {title}: listening after {servers[key].load_seconds:.1f} s, "
                  f"RSS {results[key]['rss_loaded']['VmRSS'] / MiB:.0f} MiB", flush=True)
        order = list(scenarios)
        for round_ in range(args.rounds):
            for key in order[round_ % len(order):] + order[:round_ % len(order)]:
                title, served, _ = scenarios[key]
                got = drive(servers[key].url, list(served), clips, args.concurrency, args.requests, args.seconds,
                            servers[key].pid)
                results[key]["rounds"].append(got["clips_per_s"])
                results[key]["cpu"].append(got["server_cpu_per_clip"])
                results[key]["client_cpu"].append(got["client_cpu_per_clip"])
                results[key]["latencies"] += got["latencies"]
                results[key]["failures"] += len(got["failures"])
                print(f"round {round_ + 1} {key}: {got['clips_per_s']:.1f} clips/s ({len(got['latencies'])} in "
                      f"{got['seconds']:.1f} s, {len(got['failures'])} failed), server CPU "
                      f"{1000 * got['server_cpu_per_clip']:.1f} ms/clip, load {os.getloadavg()[0]:.1f}", flush=True)
            load.append(os.getloadavg())
        for key, server in servers.items():
            results[key]["rss_end"] = memory(server.pid)
    finally:
        for server in servers.values():
            server.stop()
    a, b, c = (results[k]["rounds"] for k in "abc")
    mixed = [x / y for x, y in zip(b, a)]
    batching = [x / y for x, y in zip(b, c)]
    cpu = {key: statistics.median(results[key]["cpu"]) for key in results}
    summary = {"mixed_over_one": statistics.median(mixed), "batching_over_off": statistics.median(batching),
               "mixed_rounds": mixed, "batching_rounds": batching, "load": load,
               # the same ratios from the server's CPU time per clip (less sensitive to others' load)
               "mixed_over_one_cpu": cpu["a"] / cpu["b"], "batching_over_off_cpu": cpu["c"] / cpu["b"]}
    print_throughput(args, results, summary)
    return {"scenarios": {k: {**v, "latencies": None} for k, v in results.items()}, "summary": summary}


def print_throughput(args, results: dict, summary: dict) -> None:
    print(f"\n{args.backbone} backbone, concurrency {args.concurrency}, max batch {args.max_batch}, "
          f"max wait {args.max_wait_ms} ms, "
          f"{args.rounds} rounds of up to {args.requests} requests / {args.seconds:g} s; load average "
          + " -> ".join("/".join(f"{x:.1f}" for x in load) for load in summary["load"][::len(summary['load']) - 1]))
    print("| scenario | clips/s (median of rounds) | rounds | p50 latency (ms) | p99 latency (ms) | "
          "server CPU ms / clip | client CPU ms / clip | requests | failed | RSS loaded (MiB) | RSS at the end (MiB) |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key, result in results.items():
        lat = result["latencies"]
        print(f"| ({key}) {result['title']} | {statistics.median(result['rounds']):.1f} | "
              f"{', '.join(f'{x:.1f}' for x in result['rounds'])} | {1000 * percentile(lat, 50):.0f} | "
              f"{1000 * percentile(lat, 99):.0f} | {1000 * statistics.median(result['cpu']):.1f} | "
              f"{1000 * statistics.median(result['client_cpu']):.1f} | {len(lat)} | {result['failures']} | "
              f"{result['rss_loaded']['VmRSS'] / MiB:.0f} | {result['rss_end']['VmRSS'] / MiB:.0f} |")
    print(f"mixed / one task: {summary['mixed_over_one']:.2f} clips/s (rounds "
          f"{', '.join(f'{x:.2f}' for x in summary['mixed_rounds'])}), {summary['mixed_over_one_cpu']:.2f} by server "
          "CPU per clip; target >= 0.85")
    print(f"batching / batching off: {summary['batching_over_off']:.2f} clips/s (rounds "
          f"{', '.join(f'{x:.2f}' for x in summary['batching_rounds'])}), {summary['batching_over_off_cpu']:.2f} by "
          "server CPU per clip; target >= 1.5")


# ------------------------------------------------------------------ memory

def memory_bench(args: argparse.Namespace, work: Path) -> dict:
    print("writing a random AST-base backbone and 8 runs on it (random tensors) ...", flush=True)
    backbone = ast_base_backbone(work / "ast-base", args.max_length)
    runs = {name: random_run(work / "runs" / name, method, seed, str(backbone), args.max_length,
                             RANDOM_RUN.format(seed))
            for seed, (name, method) in enumerate(METHODS.items())}
    clips = fsdd_clips(args.fsdd, args.warm_requests, work / "clips")
    found = {}
    for label, served in (("1 task", {"soft": runs["soft"]}), ("8 tasks", runs)):
        server = None
        try:
            server = Server(served, "--max-batch", str(args.max_batch), log=work / f"server-{len(served)}.log")
            loaded = memory(server.pid)
            warm = drive(server.url, list(served), clips, args.concurrency, args.warm_requests, 600)
            found[label] = {"loaded": loaded, "after": memory(server.pid), "load_seconds": server.load_seconds,
                            "requests": len(warm["latencies"]), "failed": len(warm["failures"])}
            print(f"{label}: listening after {server.load_seconds:.1f} s; RSS {loaded['VmRSS'] / MiB:.0f} MiB, "
                  f"after {len(warm['latencies'])} requests {found[label]['after']['VmRSS'] / MiB:.0f} MiB", flush=True)
        finally:
            if server is not None:
                server.stop()
    one, eight = found["1 task"], found["8 tasks"]
    print(f"\nAST-base (768 wide, 12 blocks), {args.max_length} frames; load average "
          + "/".join(f"{x:.1f}" for x in os.getloadavg()))
    print("| server | RSS loaded (MiB) | anon / file (MiB) | RSS after requests (MiB) | anon / file (MiB) | "
          "peak VmHWM (MiB) | start-up (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, got in found.items():
        loaded, after = got["loaded"], got["after"]
        print(f"| {label} | {loaded['VmRSS'] / MiB:.0f} | {loaded['RssAnon'] / MiB:.0f} / {loaded['RssFile'] / MiB:.0f}"
              f" | {after['VmRSS'] / MiB:.0f} | {after['RssAnon'] / MiB:.0f} / {after['RssFile'] / MiB:.0f} | "
              f"{after['VmHWM'] / MiB:.0f} | {got['load_seconds']:.1f} |")
    for when in ("loaded", "after"):
        ratio = eight[when]["VmRSS"] / one[when]["VmRSS"]
        separate = 8 * one[when]["VmRSS"]
        shared_libs = 8 * one[when]["RssAnon"] + one[when]["RssFile"]
        print(f"{when}: 8 tasks / 1 task = {ratio:.3f} (target <= 1.15); 8 separate servers: 8 x RSS = "
              f"{separate / MiB:.0f} MiB, 8 x anon + file once = {shared_libs / MiB:.0f} MiB "
              f"({shared_libs / eight[when]['VmRSS']:.1f}x the shared server)")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="job", required=True)
    speed = sub.add_parser("throughput", help="clips/s and latency: one task, 8 mixed, 8 mixed without batching")
    speed.add_argument("--concurrency", type=int, default=16)
    speed.add_argument("--requests", type=int, default=400, help="requests per scenario and round, at most")
    speed.add_argument("--seconds", type=float, default=40, help="seconds per scenario and round, at most")
    speed.add_argument("--rounds", type=int, default=3)
    speed.add_argument("--clips", type=int, default=60, help="distinct FSDD clips posted")
    speed.add_argument("--max-batch", type=int, default=32)
    speed.add_argument("--max-wait-ms", type=float, default=10)
    speed.add_argument("--backbone", choices=["embedded", "ast-base"], default="embedded",
                       help="the runs' backbone: the embedded AST, or a random AST-base (1 s windows)")
    mem = sub.add_parser("memory", help="resident memory of 1 task against 8 on an AST-base backbone")
    mem.add_argument("--max-length", type=int, default=100, help="frames per window (100 = 1 s)")
    mem.add_argument("--warm-requests", type=int, default=32)
    mem.add_argument("--concurrency", type=int, default=8)
    mem.add_argument("--max-batch", type=int, default=32)
    for each in (speed, mem):
        each.add_argument("--out", type=Path, default=None, help="also write the results (JSON) here")
        each.add_argument("--fsdd", type=Path, default=FSDD, help="the FSDD recordings folder (read only)")
        each.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it (runs, logs)")
    args = parser.parse_args()

    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {'/'.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    work = args.keep or Path(tempfile.mkdtemp(prefix="serve-bench-"))
    os.environ.setdefault("SOFTMOA_HOME", str(work / "home"))
    try:
        result = throughput(args, work) if args.job == "throughput" else memory_bench(args, work)
        if args.out:
            args.out.write_text(json.dumps(result, indent=1, default=str))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
