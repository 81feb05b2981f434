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
import tempfile
import time

COLD_START = r"""
import time
marks = [time.perf_counter()]
import torch
marks.append(time.perf_counter())
from transformers import CLIPTextModel
marks.append(time.perf_counter())
from diffusers import StableDiffusionPipeline, UNet2DConditionModel
marks.append(time.perf_counter())
from hypernet.cli import build_parser
from hypernet.cli.defaults import toy_model_loader
from hypernet.generation import Request
from hypernet.loading import load_generator
build_parser()
marks.append(time.perf_counter())
generator = load_generator(None, hypernet_dir="models/hypernetworks", progress=False, default_model=toy_model_loader())
marks.append(time.perf_counter())
generator.generate(Request(prompt="a red circle on a blue background", seed=0, steps=20), progress=False)
marks.append(time.perf_counter())
print(" ".join(f"{b - a:.3f}" for a, b in zip(marks, marks[1:])))
"""
PHASES = ("import torch", "import transformers (CLIPTextModel)", "import diffusers (UNet, SD pipeline)",
          "import hypernet (CLI, loading)", "load the toy model (generator)", "first picture (20 steps)")


def machine_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cold_start(repeats: int) -> tuple[list[float], float]:
    """Medians over `repeats` fresh processes: the seconds of each of `PHASES`, and the
    wall time of a whole `hypernet generate` command (interpreter start to exit)."""
    phases, walls = [], []
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = [sys.executable, "-m", "hypernet", "generate", "a red circle on a blue background", "--seed", "1",
               "--quiet", "--out", tempfile.mkdtemp()]
    for _ in range(repeats):
        output = subprocess.run([sys.executable, "-c", COLD_START], capture_output=True, text=True, env=environment, check=True)
        phases.append([float(value) for value in output.stdout.split()[-len(PHASES):]])
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, env=environment, check=True)
        walls.append(time.perf_counter() - started)
    return [statistics.median(column) for column in zip(*phases)], statistics.median(walls)


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
    phases, wall = cold_start(args.cold_repeats)
    rows += [(f"cold start: {name}", seconds) for name, seconds in zip(PHASES, phases)]
    rows.append(("cold start: whole `hypernet generate` process (interpreter start to exit)", wall))
    print(f"Machine: {machine_name()}, {os.cpu_count()} logical CPUs, torch {torch.__version__} with {torch.get_num_threads()} threads, fp32")
    print()
    print("| measurement | seconds (median) |")
    print("| --- | ---: |")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
