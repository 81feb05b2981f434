"""Time to load an 84 MB hypernetwork (1-2-1, sizes 768/320/640/1280, fp32), .pt and
.safetensors, best of N after one warm-up. Prints a markdown table.

    python benchmarks/load_speed.py [--repeats 5]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import hypernet
from common import machine


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    network = hypernet.Hypernetwork.create(sizes=[768, 320, 640, 1280], layer_structure=[1, 2, 1], generator_seed=0)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for suffix in ("pt", "safetensors"):
            path = Path(folder) / f"bench.{suffix}"
            hypernet.save(network, path)
            hypernet.load(path)  # warm-up (page cache, lazy imports)
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                hypernet.load(path)
                times.append(time.perf_counter() - start)
            rows.append((suffix, path.stat().st_size / 1e6, min(times), statistics.median(times)))
    print(f"Machine: {machine()}\n")
    print("| format | file size (MB) | best load (s) | median load (s) |")
    print("|---|---|---|---|")
    for suffix, size, best, median in rows:
        print(f"| .{suffix} | {size:.1f} | {best:.3f} | {median:.3f} |")


if __name__ == "__main__":
    main()
