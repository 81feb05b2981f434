"""The seed article's three example prompts, with its negative prompt, on the embedded
model, with hypernetworks of those names in a test library."""

import numpy as np
import pytest

import hypernet
from hypernet import attention
from hypernet.generation import Request
from hypernet.cli.defaults import toy_model_loader
from hypernet.loading import load_generator
from hypernet.network import Hypernetwork

pytestmark = pytest.mark.needs_toy_model

SEED_PROMPTS = [
    "water elemental woman walking across a busy street <hypernet:waterElemental_10:0.7>",
    "detailed face, a beautiful woman, explorer in forest, white top, short brown pants, hat, sky background, "
    "realism, small breast <hypernet:incaseStyle_incaseAnythingV3:1>",
    "drawing male leather jacket cyberpunk 2077 on a city street by WoD1 <hypernet:gothicRPGArtstyle_v1:1>",
]
SEED_NEGATIVE = (
    "moon, ugly, tiling, poorly drawn hands, poorly drawn feet, poorly drawn face, out of frame, extra limbs, "
    "disfigured, deformed, body out of frame, bad anatomy, watermark, signature, cut off, low contrast, "
    "underexposed, overexposed, bad art, beginner, amateur, distorted face, blurry, draft, grainy, large breast"
)


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    library = tmp_path_factory.mktemp("hypernetworks")
    generator = load_generator(None, hypernet_dir=library, device="cpu", progress=False,
                               default_model=toy_model_loader())
    unet = generator.pipe.unet
    sizes = sorted({m.to_k.in_features for n, m in unet.named_modules() if n.endswith((".attn1", ".attn2"))})
    for seed, name in enumerate(["waterElemental_10", "incaseStyle_incaseAnythingV3", "gothicRPGArtstyle_v1"]):
        hypernet.save(Hypernetwork.create(sizes=sizes, weight_init="XavierNormal", generator_seed=seed, name=name), library / f"{name}.pt")
    yield generator
    attention.uninstall(unet)


@pytest.mark.parametrize("prompt", SEED_PROMPTS)
def test_seed_prompts_generate_on_the_embedded_model(generator, prompt):
    request = Request(prompt=prompt, negative_prompt=SEED_NEGATIVE, steps=4, seed=1, sampler="Euler a")
    result = generator.generate(request, progress=False)[0]
    plain = generator.generate(Request(prompt=prompt.split(" <hypernet")[0], negative_prompt=SEED_NEGATIVE, steps=4,
                                       seed=1, sampler="Euler a"), progress=False)[0]
    assert result.networks and result.networks[0][0] in prompt
    assert not np.array_equal(np.asarray(result.image), np.asarray(plain.image))  # the hypernetwork acted
    assert result.infotext.splitlines()[0] == prompt
    assert "Negative prompt: moon, ugly" in result.infotext
