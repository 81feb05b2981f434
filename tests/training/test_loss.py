"""The loss of §7.4 and mixed precision: eps or v target from the scheduler config,
gradients clipped after unscaling."""

import pytest
import torch

from hypernet.errors import HypernetConfigError
from hypernet.training import TrainingConfig, train
from hypernet.training import loss as loss_module

from .conftest import make_dataset, new_network


def test_targets_follow_the_scheduler_prediction_type(pipe):
    epsilon = loss_module.noise_schedule(pipe.scheduler.config)
    assert epsilon.prediction_type == "epsilon" and epsilon.timesteps == 1000
    v = loss_module.noise_schedule({**pipe.scheduler.config, "prediction_type": "v_prediction"})
    latents, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    timesteps = torch.tensor([10, 900])
    noisy, target = loss_module.noisy_inputs(epsilon, latents, noise, timesteps)
    assert torch.equal(target, noise)
    noisy_v, velocity = loss_module.noisy_inputs(v, latents, noise, timesteps)
    assert torch.equal(noisy, noisy_v)
    alpha = epsilon.alphas_cumprod[timesteps].sqrt().view(-1, 1, 1, 1)
    sigma = (1 - epsilon.alphas_cumprod[timesteps]).sqrt().view(-1, 1, 1, 1)
    assert torch.allclose(alpha * noisy - sigma * velocity, latents, atol=1e-5)  # v recovers x0
    from diffusers import DDPMScheduler

    reference = DDPMScheduler(**{k: pipe.scheduler.config[k] for k in ("beta_start", "beta_end", "beta_schedule")},
                              prediction_type="v_prediction")
    assert torch.allclose(velocity, reference.get_velocity(latents, noise, timesteps), atol=1e-6)
    assert torch.allclose(noisy, reference.add_noise(latents, noise, timesteps), atol=1e-6)
    with pytest.raises(HypernetConfigError, match="'sample' cannot be trained"):
        loss_module.noise_schedule({**pipe.scheduler.config, "prediction_type": "sample"})


def first_step(pipe, folder, run_dir, precision, clip_grad):
    """(result, network, {name: weight change}) of one optimizer step."""
    network = new_network()
    before = {key: value.clone() for key, value in network.state_dict().items()}
    config = TrainingConfig(data=folder, learning_rate="1e-3", max_steps=1, width=16, height=16, save_every=0,
                            preview_every=0, run_dir=run_dir, seed=2, precision=precision,
                            clip_grad=clip_grad, clip_value="0.01")
    result = train(pipe, network, config, progress=False, log=lambda m: None)
    return result, network, {key: network.state_dict()[key].cpu() - before[key] for key in before}


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_keeps_fp32_weights_and_clips_real_gradients(pipe, tmp_path, precision):
    """AdamW's first step moves each weight by about lr x sign(gradient), whatever the
    gradient's size, while the gradients stay well above its eps (1e-8). Clipping the real
    gradients to a norm of 0.01 keeps them so; clipping the loss-scaled ones (x65536) and
    unscaling afterwards would leave ~1e-7 in all and shrink the step about tenfold."""
    folder = make_dataset(tmp_path / "data")
    result, network, clipped = first_step(pipe, folder, tmp_path / "clipped", precision, "norm")
    assert result.steps_done == 1 and all(p.dtype == torch.float32 for p in network.parameters())
    _, _, free = first_step(pipe, folder, tmp_path / "free", precision, "disabled")
    moved = sum(change.abs().sum() for change in clipped.values()) / sum(change.abs().sum() for change in free.values())
    assert 0.9 < moved < 1.01, moved
