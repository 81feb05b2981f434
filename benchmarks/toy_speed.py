"""Speed of the embedded toy model on this machine: seconds per picture (20 steps,
batch 1, classifier-free guidance, after warm-up) and the cold start of a fresh
process (import, load, first picture). Prints a markdown table.

    python benchmarks/toy_speed.py [--repeats 10]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

COLD_START = r"""
import time
started = time.perf_counter()
from hypernet.toy import evaluate, model
pipeline = model.load_toy_pipeline()
loaded = time.perf_counter()
evaluate.generate(pipeline, ["a red circle on a blue background"], [0], steps=20)
done = time.perf_counter()
print(f"{loaded - started:.3f} {done - started:.3f}")
"""


def machine_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cold_start(repeats: int) -> tuple[float, float, float]:
    """Median over `repeats` fresh processes of (load seconds, first picture seconds,
    process wall seconds including interpreter start)."""
    loads, firsts, walls = [], [], []
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    for _ in range(repeats):
        started = time.perf_counter()
        output = subprocess.run([sys.executable, "-c", COLD_START], capture_output=True, text=True, env=environment, check=True)
        walls.append(time.perf_counter() - started)
        load, first = (float(value) for value in output.stdout.split()[-2:])
        loads.append(load)
        firsts.append(first)
    return statistics.median(loads), statistics.median(firsts), statistics.median(walls)


def warm_seconds_per_picture(scheduler: str, repeats: int, steps: int = 20) -> float:
    import torch

    from hypernet.toy import evaluate, model

    pipeline = model.load_toy_pipeline(scheduler=scheduler)
    evaluate.generate(pipeline, ["a red circle on a blue background"], [0], steps=steps)  # warm-up
    times = []
    for index in range(repeats):
        started = time.perf_counter()
        evaluate.generate(pipeline, ["a red circle on a blue background"], [index], steps=steps)
        times.append(time.perf_counter() - started)
    del torch
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10, help="pictures per warm measurement")
    parser.add_argument("--cold-repeats", type=int, default=3, help="fresh processes for the cold start")
    args = parser.parse_args()

    import torch

    rows = [(f"{name}, 20 steps, batch 1, warm", warm_seconds_per_picture(name, args.repeats)) for name in ("ddim", "euler")]
    load, first, wall = cold_start(args.cold_repeats)
    rows += [
        ("cold start: import + load pipeline", load),
        ("cold start: import + load + first picture", first),
        ("cold start: whole process incl. interpreter", wall),
    ]
    print(f"Machine: {machine_name()}, {os.cpu_count()} logical CPUs, torch {torch.__version__} with {torch.get_num_threads()} threads, fp32")
    print()
    print("| measurement | seconds (median) |")
    print("| --- | ---: |")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
