"""The webui's mean restoration divides by the weighted mean; when that mean is 0 or
changes sign (encoders whose outputs average near 0) the result would be inf or every
vector flipped. Then the weighted output is kept as it is."""

import torch

from hypernet.prompt.conditioning import _apply_original


def test_mean_crossing_zero_gives_finite_weighted_output():
    z = torch.tensor([[[1.0, -0.9], [0.5, -0.7]]])  # sums 0.1 and -0.2: mean -0.025
    multipliers = torch.tensor([[1.0, 1.2]])  # weighted sums 0.1, -0.24: same sign, restored
    restored = _apply_original(z, multipliers)
    assert torch.allclose(restored.mean(), z.mean())
    crossing = torch.tensor([[3.0, 1.0]])  # weighted sums 0.3, -0.2: the mean turns positive
    out = _apply_original(z, crossing)
    assert torch.isfinite(out).all()
    assert torch.equal(out, z * crossing[..., None])
    zero = torch.tensor([[[1.0, -1.0], [1.0, -1.0]]])
    assert torch.isfinite(_apply_original(zero, torch.tensor([[1.0, 2.0]]))).all()
