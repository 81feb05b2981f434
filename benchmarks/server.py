"""`hypernet serve` under load, on the embedded toy model (64x64), measured in one run.

Starts `python -m hypernet serve --no-ui` as a subprocess (one torch thread, as this
process) on a free loopback port and reports:

(a) a txt2img through the API (HTTP, JSON, PNG + base64, the queue, the worker thread) vs
    the same request through `Generator.generate`, on one pipeline in this process (the
    app on a uvicorn thread here), runs interleaved, medians (goal <= 1.10x); the same
    POST to the subprocess is shown beside them;
(b) GET /progress latency while a long job runs, sequential requests on a keep-alive
    connection, with and without the live preview image (goal p99 < 100 ms);
(c) throughput: C concurrent clients x R requests each (goal: 0 errors), requests/s and
    the latency each client saw.

    python benchmarks/server.py [--steps 10] [--repeats 12] [--polls 300] [--clients 50]
                                [--requests 20] [--load-steps 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import torch

from common import machine, median

API = "/sdapi/v1"
PROMPT = "a red circle on a blue background <hypernet:water:1>"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(folder: Path, queue_size: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "hypernet", "serve", "--port", str(port), "--no-ui", "--queue-size", str(queue_size),
         "--hypernet-dir", str(folder / "hn"), "--ckpt-dir", str(folder / "ckpt"), "--outputs-dir",
         str(folder / "out"), "--training-dir", str(folder / "train")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("hypernet serve exited while starting")
        try:
            if httpx.get(f"{url}{API}/progress", timeout=5).json()["state"]["job"] == "":
                # answered and idle: the model preload is done
                if httpx.get(f"{url}{API}/sd-models", timeout=5).json()[0]["hash"]:
                    return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit("hypernet serve did not start within 300 s")


def percentile(values, fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


class InProcessServer:
    """The same app `hypernet serve` runs, on a uvicorn thread of this process, so the API
    and `Generator.generate` use one pipeline object, one torch and one process."""

    def __init__(self, folder: Path):
        import uvicorn

        from hypernet.server import ServerPaths, Service, create_app

        self.service = Service(ServerPaths(hypernet_dir=folder / "hn", checkpoint_dir=folder / "ckpt",
                                           outputs_dir=folder / "out", training_dir=folder / "train"))
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(create_app(self.service, ui=False), log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)
        self.thread.start()
        while not self.server.started or self.service.jobs.busy or self.service.jobs.waiting:
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(60)
        self.socket.close()


def api_vs_in_process(url: str, steps: int, repeats: int, folder: Path) -> dict:
    from hypernet.generation import Request

    local = InProcessServer(folder)
    generator = local.service._generator
    body = {"prompt": PROMPT, "steps": steps, "seed": 1, "sampler_name": "Euler a", "cfg_scale": 7}
    request = Request(prompt=PROMPT, steps=steps, seed=1, sampler="Euler a", cfg_scale=7)
    api, direct, other = [], [], []
    try:
        with httpx.Client(base_url=local.url, timeout=300) as client, httpx.Client(base_url=url, timeout=300) as remote:
            def timed(function) -> float:
                start = time.perf_counter()
                function()
                return time.perf_counter() - start

            calls = (lambda: client.post(f"{API}/txt2img", json=body).raise_for_status(),
                     lambda: generator.generate(request, progress=False),
                     lambda: remote.post(f"{API}/txt2img", json=body).raise_for_status())
            for _ in range(2):  # warm all three
                for call in calls:
                    call()
            for _ in range(repeats):
                for times, call in zip((api, direct, other), calls):
                    times.append(timed(call))
    finally:
        local.stop()
    return {"api": median(api), "direct": median(direct), "ratio": median(api) / median(direct),
            "subprocess": median(other), "api_min": min(api), "direct_min": min(direct),
            "subprocess_min": min(other), "ratio_min": min(api) / min(direct)}


def progress_latency(url: str, polls: int) -> dict:
    found = {}
    with httpx.Client(base_url=url, timeout=300) as client:
        job = threading.Thread(target=lambda: client.post(f"{API}/txt2img", json={
            "prompt": PROMPT, "steps": 150, "n_iter": 100, "seed": 1, "sampler_name": "Euler"}))
        job.start()
        with httpx.Client(base_url=url, timeout=30) as poller:
            while poller.get(f"{API}/progress").json()["state"]["sampling_step"] < 1:
                time.sleep(0.01)
            for label, params in (("with current_image", {}), ("skip_current_image", {"skip_current_image": True})):
                times, busy = [], 0
                for _ in range(polls):
                    start = time.perf_counter()
                    answer = poller.get(f"{API}/progress", params=params)
                    times.append(time.perf_counter() - start)
                    busy += answer.json()["state"]["job"] == "txt2img"
                found[label] = (percentile(times, 0.5), percentile(times, 0.99), max(times), busy)
            poller.post(f"{API}/interrupt")
        job.join()
    return found


async def throughput(url: str, clients: int, requests: int, steps: int) -> dict:
    latencies, statuses = [], []

    async def user(index: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=900) as client:
            for number in range(requests):
                body = {"prompt": f"a red circle <hypernet:water:{(index + number) % 3}>", "steps": steps,
                        "seed": index * requests + number, "sampler_name": "Euler a"}
                start = time.perf_counter()
                try:
                    answer = await client.post(f"{API}/txt2img", json=body)
                    statuses.append(answer.status_code)
                except httpx.HTTPError as error:
                    statuses.append(type(error).__name__)
                latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(user(i) for i in range(clients)))
    seconds = time.perf_counter() - start
    errors = [s for s in statuses if s != 200]
    return {"seconds": seconds, "count": len(statuses), "errors": len(errors), "error_kinds": sorted(set(map(str, errors))),
            "rate": len(statuses) / seconds, "p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10, help="sampling steps of (a)")
    parser.add_argument("--repeats", type=int, default=12, help="interleaved runs of (a)")
    parser.add_argument("--polls", type=int, default=300, help="/progress requests of (b), per variant")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=20, help="requests per client in (c)")
    parser.add_argument("--load-steps", type=int, default=2, help="sampling steps of each request in (c)")
    parser.add_argument("--parts", default="abc", help="which measurements to run (default abc)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        print("starting hypernet serve...", flush=True)
        process, url = start_server(Path(folder), queue_size=args.clients + 8)
        try:
            a = b = c = None
            if "a" in args.parts:
                print("(a) API vs in-process...", flush=True)
                a = api_vs_in_process(url, args.steps, args.repeats, Path(folder) / "local")
            if "b" in args.parts:
                print("(b) /progress while a job runs...", flush=True)
                b = progress_latency(url, args.polls)
            if "c" in args.parts:
                print(f"(c) {args.clients} clients x {args.requests} requests...", flush=True)
                c = asyncio.run(throughput(url, args.clients, args.requests, args.load_steps))
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(120)
    after = os.getloadavg()

    print(f"\nMachine: {machine()}")
    print(f"load average (1 min) before {load[0]:.2f}, after {after[0]:.2f}; hypernet serve exited {code} on SIGTERM\n")
    if a:
        report_a(args, a)
    if b:
        report_b(args, b)
    if c:
        report_c(args, c)


def report_a(args, a) -> None:
    print(f"(a) txt2img, toy model 64x64, {args.steps} steps Euler a, CFG 7, `{PROMPT}`, median of {args.repeats}, "
          "interleaved\n")
    print("| path | median (s) | fastest (s) |")
    print("|---|---|---|")
    print(f"| `Generator.generate` in-process | {a['direct']:.3f} | {a['direct_min']:.3f} |")
    print(f"| POST /sdapi/v1/txt2img to the app in this process (HTTP, queue, worker thread, PNG + base64) | "
          f"{a['api']:.3f} | {a['api_min']:.3f} |")
    met = "(met)" if a["ratio"] <= 1.10 else "(NOT met)"
    print(f"| ratio API / in-process (goal <= 1.10) | {a['ratio']:.3f} {met} | {a['ratio_min']:.3f} |")
    print(f"| for comparison: the same POST to the `hypernet serve` subprocess | {a['subprocess']:.3f} | "
          f"{a['subprocess_min']:.3f} |")


def report_b(args, b) -> None:
    print(f"\n(b) GET /progress while a 150-step job runs, {args.polls} sequential requests each\n")
    print("| request | p50 (ms) | p99 (ms) | max (ms) | answers that saw the job running |")
    print("|---|---|---|---|---|")
    for label, (p50, p99, worst, busy) in b.items():
        print(f"| {label} | {p50 * 1000:.1f} | {p99 * 1000:.1f} | {worst * 1000:.1f} | {busy}/{args.polls} |")


def report_c(args, c) -> None:
    print(f"\n(c) {args.clients} concurrent clients x {args.requests} txt2img each, {args.load_steps} steps, "
          "one worker\n")
    print("| requests | errors | seconds | requests/s | latency p50 (s) | latency p99 (s) |")
    print("|---|---|---|---|---|---|")
    kinds = f" ({', '.join(c['error_kinds'])})" if c["errors"] else ""
    print(f"| {c['count']} | {c['errors']}{kinds} | {c['seconds']:.1f} | {c['rate']:.2f} | {c['p50']:.2f} | "
          f"{c['p99']:.2f} |")


if __name__ == "__main__":
    main()
