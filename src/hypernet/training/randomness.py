"""Counter-based randomness: every random draw of a run is a pure function of the run's
seed and where it happens (epoch, micro-batch, example). That is what makes a resumed run
end with the same weights as an uninterrupted one, makes previews and restarts unable to
disturb the training stream, and gives data-parallel runs the same examples, noise and
timesteps per global batch whatever the number of processes.
"""

from __future__ import annotations

import hashlib
import struct

import torch

SEED_BITS = 63


def stream_seed(seed: int, purpose: str, *counters: int) -> int:
    """A 63-bit seed for one (purpose, counters) stream of the run `seed`."""
    digest = hashlib.blake2b(purpose.encode("utf-8"), digest_size=8, key=struct.pack("<q", seed & ((1 << SEED_BITS) - 1)))
    for counter in counters:
        digest.update(struct.pack("<q", int(counter)))
    return int.from_bytes(digest.digest(), "little") & ((1 << SEED_BITS) - 1)


def generator(seed: int, purpose: str, *counters: int) -> torch.Generator:
    """A CPU generator for one stream; draw on the CPU, then move the result."""
    return torch.Generator("cpu").manual_seed(stream_seed(seed, purpose, *counters))


def new_seed() -> int:
    """A fresh run seed (recorded in settings.json and the training-state side-car)."""
    import secrets

    return secrets.randbits(31)
