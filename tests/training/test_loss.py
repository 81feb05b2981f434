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


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_keeps_fp32_weights_and_clips_real_gradients(pipe, tmp_path, monkeypatch, precision):
    folder = make_dataset(tmp_path / "data")
    seen = []
    clip = torch.nn.utils.clip_grad_norm_

    def spy(parameters, threshold, *args, **kwargs):
        parameters = list(parameters)
        seen.append(float(torch.nn.utils.get_total_norm([p.grad for p in parameters])))
        return clip(parameters, threshold, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    network = new_network()
    config = TrainingConfig(data=folder, learning_rate="1e-3", max_steps=2, width=16, height=16, save_every=0,
                            preview_every=0, run_dir=tmp_path / "run", seed=2, precision=precision,
                            clip_grad="norm", clip_value="0.01")
    result = train(pipe, network, config, progress=False, log=lambda m: None)
    assert result.steps_done == 2 and all(p.dtype == torch.float32 for p in network.parameters())
    assert len(seen) == 2 and all(0 < norm < 10 for norm in seen)  # unscaled: a scaled norm would be ~65536x
