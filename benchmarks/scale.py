"""Two processes against one on this machine, for the two things `hypernet` shares out
(docs/scale.md), with the embedded toy model, each as a whole command timed from start to
exit (interpreter start, imports and model load included: each process pays them):

(a) `hypernet generate --from-file` with 40 toy prompts (20 steps, 64x64, batch 1):
    one plain process, against `torchrun --nproc_per_node 2` sharing the lines;
(b) 200 training steps of a fresh toy hypernetwork (the sizes of `water`: 80, 32, 64) on 16
    drawn pictures: one process
    with batch 2b, against `torchrun --nproc_per_node 2` with batch b (the same global
    batch, so the same work and, within float summation order, the same network).

Then the arithmetic for 8 GPUs from the measured parts. Prints markdown.

    python benchmarks/scale.py [--repeats 1] [--batch 2] [--steps 200] [--prompts 40]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine  # noqa: E402

PROMPTS = ["a red circle on a blue background", "a green square on a yellow background",
           "a blue triangle on a white background", "a yellow circle on a black background"]
COLOURS = [((230, 40, 40), "circle"), ((40, 60, 230), "square"), ((40, 200, 60), "circle"), ((240, 230, 40), "square")]
NAMES = ["red", "blue", "green", "yellow"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def environment(threads: int = 1) -> dict:
    source = str(Path(__file__).resolve().parents[1] / "src")
    variables = {key: value for key, value in os.environ.items()
                 if key not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "OMP_NUM_THREADS")}
    variables.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS=str(threads),
                     PYTHONPATH=os.pathsep.join(filter(None, [source, variables.get("PYTHONPATH")])))
    return variables


def timed(command: list[str], cwd: Path) -> tuple[float, str]:
    started = time.perf_counter()
    finished = subprocess.run(command, cwd=cwd, env=environment(), capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if finished.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{finished.stderr[-3000:]}")
    print(f"{seconds:7.1f} s  {' '.join(command[command.index('hypernet') + 1:][:4])} ... (load average after: "
          f"{os.getloadavg()[0]:.2f})", file=sys.stderr, flush=True)
    return seconds, finished.stdout + finished.stderr


def hypernet(processes: int) -> list[str]:
    """The `hypernet` command, alone or under torchrun. Every process gets one torch thread
    (OMP_NUM_THREADS=1, torchrun's own default), the lone process too: so the comparison is
    one core against two. (A lone process with torch's default of one thread per core was
    far slower still on the shared 2-core machine: OpenMP threads spinning against other
    work, 171 s for 3 pictures against 45 s for two 1-thread processes.)"""
    if processes == 1:
        return [sys.executable, "-m", "hypernet"]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port",
            str(free_port()), "-m", "hypernet"]


def generation(root: Path, processes: int, prompts: int, index: int) -> float:
    lines = [PROMPTS[i % len(PROMPTS)] for i in range(prompts)]
    (root / f"prompts-{prompts}.txt").write_text("\n".join(lines) + "\n")
    out = root / f"out-{processes}-{prompts}-{index}"
    seconds, _ = timed([*hypernet(processes), "generate", "--from-file", f"prompts-{prompts}.txt", "--seed", "1",
                        "--steps", "20", "--quiet", "--out", str(out), "--hypernet-dir", "empty-library"], root)
    assert len(list(out.glob("*.png"))) == prompts, out
    return seconds


def draw_dataset(folder: Path, count: int) -> None:
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        colour, shape = COLOURS[index % len(COLOURS)]
        image = Image.new("RGB", (64, 64), (20 + 10 * (index // 4), 20, 30))
        painter = ImageDraw.Draw(image)
        box = [8 + index % 5, 10, 54, 52 - index % 3]
        (painter.ellipse if shape == "circle" else painter.rectangle)(box, fill=colour)
        image.save(folder / f"{index:02d}.png")
        (folder / f"{index:02d}.txt").write_text(f"a {NAMES[index % 4]} {shape}\n")


def training(root: Path, processes: int, batch: int, steps: int, index: int) -> tuple[float, float]:
    """(wall seconds of the command, seconds of the run itself as the trainer reports them)."""
    import hypernet as package
    from hypernet.network import Hypernetwork

    library = root / f"lib-{processes}-{index}"
    library.mkdir()
    water = package.load(Path(package.__file__).parent / "data" / "hypernetworks" / "water.pt")  # its sizes, a fresh start
    package.save(Hypernetwork.create(sizes=water.sizes, generator_seed=0, name="toy"), library / "toy.pt")
    seconds, output = timed([*hypernet(processes), "train", "toy", "--data", "data", "--hypernet-dir", str(library),
                             "--batch-size", str(batch), "--lr", f"1e-4:{steps}", "--seed", "5", "--save-every", "100",
                             "--preview-every", "0", "--log-dir", f"log-{processes}-{index}", "--quiet"], root)
    found = re.search(r"finished: step 0 -> (\d+) in ([0-9.]+) s", output)
    assert found and int(found.group(1)) == steps, output[-2000:]
    return seconds, float(found.group(2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each command (interleaved; medians)")
    parser.add_argument("--prompts", type=int, default=40)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=2, help="b: batch per process of the 2-process run")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="hypernet-scale-"))
    draw_dataset(root / "data", 16)
    (root / "empty-library").mkdir()
    generate = {1: [], 2: []}
    small = []
    train = {1: [], 2: []}
    for index in range(args.repeats):
        small.append(generation(root, 1, 2, index))
        for processes in (1, 2):
            generate[processes].append(generation(root, processes, args.prompts, index))
        for processes in (1, 2):
            train[processes].append(training(root, processes, args.batch * (3 - processes), args.steps, index))
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)

    median = statistics.median
    g1, g2, g_small = median(generate[1]), median(generate[2]), median(small)
    t1, t2 = median(w for w, _ in train[1]), median(w for w, _ in train[2])
    r1, r2 = median(r for _, r in train[1]), median(r for _, r in train[2])
    picture = (g1 - g_small) / (args.prompts - 2)
    start = g_small - 2 * picture
    b = args.batch
    print(f"Machine: {machine()}; {os.cpu_count()} logical CPUs; {args.repeats} run(s) of each, medians")
    print()
    least = min
    m1, m2 = least(generate[1]), least(generate[2])
    n1, n2 = least(w for w, _ in train[1]), least(w for w, _ in train[2])
    q1, q2 = least(r for _, r in train[1]), least(r for _, r in train[2])
    print("| work | 1 process (s) | 2 processes (s) | 2 / 1 | fastest of each: 2 / 1 |")
    print("|---|---:|---:|---:|---:|")
    print(f"| (a) `generate --from-file`, {args.prompts} toy prompts, 20 steps, 64×64: whole command | {g1:.1f} | {g2:.1f} | "
          f"**{g2 / g1:.2f}** | {m2 / m1:.2f} |")
    print(f"| (b) train {args.steps} steps, global batch {2 * b} (1 × {2 * b} vs 2 × {b}): whole command | {t1:.1f} | "
          f"{t2:.1f} | **{t2 / t1:.2f}** | {n2 / n1:.2f} |")
    print(f"| (b) the same, the run alone (trainer's own clock: after model load) | {r1:.1f} | {r2:.1f} | "
          f"{r2 / r1:.2f} | {q2 / q1:.2f} |")
    print()
    print(f"Parts: a process's start (interpreter, imports, toy model load) ≈ {start:.1f} s; one picture ≈ {picture:.2f} s "
          f"(from a 2-prompt run, {g_small:.1f} s); training: {t1 - r1:.1f} s before the run starts, "
          f"{1000 * r1 / args.steps:.0f} ms per step at batch {2 * b} in one process, {1000 * r2 / args.steps:.0f} ms "
          f"with 2 × {b}.")
    eight = start + -(-args.prompts // 8) * picture
    print(f"8 GPUs, generation, if the parts stay as here: start + ⌈{args.prompts}/8⌉ pictures = {start:.1f} + "
          f"{-(-args.prompts // 8)} × {picture:.2f} = {eight:.1f} s against {g1:.1f} s ({g1 / eight:.1f}× faster; the "
          f"start, paid by every process at once, does not shrink).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
