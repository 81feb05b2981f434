"""The memory a generation request really takes at its peak, beside `hypernet.memory`'s
estimate for it (the number the request is checked with, margin included).

CPU: peak resident memory above the level before the request (sampled every 2 ms in a
thread). CUDA: `torch.cuda.max_memory_allocated` above the memory allocated before.
One sampling step per request: the peak does not grow with steps.

    python benchmarks/memory_estimate.py --family toy --cases 64x1 256x4 512x1
    python benchmarks/memory_estimate.py --family sd15 --cases 256x1 512x1 [--classic-attention] [--device cuda]
"""

import argparse
import gc
import threading
import time

import torch

from common import machine

from hypernet import memory
from hypernet.generation import Generator, ModelInfo, Request


class PeakResident:
    """Highest resident set size while inside the block, minus the size on entry."""

    def __init__(self):
        import psutil

        self.process = psutil.Process()
        self.peak = self.start = 0
        self._stop = threading.Event()

    def _watch(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.002)

    def __enter__(self):
        gc.collect()
        self.start = self.peak = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def used(self) -> int:
        return self.peak - self.start


def measure(generator: Generator, width: int, height: int, batch_size: int) -> int:
    request = Request("a red circle on a blue background", steps=1, seed=1, width=width, height=height,
                      batch_size=batch_size, sampler="Euler")
    device = generator.pipe.unet.device
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        generator.generate(request, progress=False)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated(device) - before
    with PeakResident() as peak:
        generator.generate(request, progress=False)
    return peak.used


def pipeline(family: str, device: str):
    if family == "toy":
        from hypernet.cli.defaults import toy_model_loader

        return toy_model_loader().load(torch.float32).to(device)
    from hypernet.models.checkpoint import pipeline_from_config

    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    return pipeline_from_config(family, dtype=dtype, device=device)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--family", default="toy", help="toy, sd15, sd2, sd2-v")
    parser.add_argument("--cases", nargs="+", default=["64x1"], help="SIDExBATCH, e.g. 512x4")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--classic-attention", action="store_true", help="diffusers' AttnProcessor (no SDPA)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    pipe = pipeline(args.family, args.device)
    if args.classic_attention:
        from diffusers.models.attention_processor import AttnProcessor

        pipe.unet.set_attn_processor(AttnProcessor())
        pipe.vae.set_attn_processor(AttnProcessor())
    generator = Generator(pipe, model=ModelInfo(args.family))
    measure(generator, 64, 64, 1)  # warm up: prompt encoder, scheduler tables, allocator pools
    print(f"{machine()}; {args.family}, {args.device}, "
          f"{'classic attention' if args.classic_attention else 'SDPA'}, dtype {pipe.unet.dtype}")
    print("| size | batch | measured peak | estimate (with margin) | estimate / measured |")
    print("|---|---|---|---|---|")
    for case in args.cases:
        side, batch = (int(part) for part in case.split("x"))
        used = measure(generator, side, side, batch)
        need = memory.estimate(pipe, side, side, batch, cfg_scale=7.0)
        print(f"| {side}x{side} | {batch} | {memory.human_bytes(used)} | {memory.human_bytes(need.bytes)} "
              f"| {need.bytes / max(used, 1):.2f} |", flush=True)


if __name__ == "__main__":
    main()
