"""A chain per row of one UNet batch (`attention.activate_rows`): each row equals that row
run alone under `activate(unet, its chain)`, in self- and cross-attention, folded or not;
equal rows are exactly `activate`; base weights and the previous state come back, even on
error; a batch of the wrong size is refused; layers no row's network reaches stay folded
or untouched; the CFG layout of a sampling loop."""

import contextlib

import pytest
import torch

from hypernet import attention
from hypernet.errors import HypernetError
from hypernet.folding import fold_of
from hypernet.network import Hypernetwork

from tiny_models import SELF_SIZES, TEXT_WIDTH, tiny_unet

from .test_processor import run, strong, unet_inputs, weights_digest

ALL = [*SELF_SIZES, TEXT_WIDTH]
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


@pytest.fixture(scope="module")
def networks():
    """a: affine (linear, folds), b: tanh (never folds), both at every width of the tiny
    UNet; text: affine, the text width only."""
    tanh = Hypernetwork.create(sizes=ALL, activation="tanh", weight_init="XavierNormal", generator_seed=2)
    return {"a": strong(ALL, 1), "b": tanh, "text": strong([TEXT_WIDTH], 3)}


SCENARIOS = {
    # every width: four groups in every layer
    "mixed": lambda n: [[], [(n["a"], 1.0)], [(n["b"], 0.8)], [(n["a"], 0.7), (n["b"], 0.5)]],
    # self-attention: two groups (none, a); cross-attention: four
    "text_only": lambda n: [[(n["text"], 1.0)], [], [(n["a"], 0.6)], [(n["text"], 1.0), (n["a"], 0.6)]],
    # self-attention: every row has a alone (folds); cross-attention: a vs a then text
    "shared_self": lambda n: [[(n["a"], 0.9)], [(n["a"], 0.9), (n["text"], 1.0)], [(n["a"], 0.9)],
                              [(n["a"], 0.9), (n["text"], -0.7)]],
}


def row(inputs, index):
    sample, timestep, context = inputs
    return sample[index:index + 1], timestep, context[index:index + 1]


def alone(unet, chain, inputs, fold):
    with attention.activate(unet, chain, fold=fold):
        return run(unet, inputs)


def max_difference(a, b) -> float:
    return (a - b).abs().max().item()


@pytest.mark.parametrize("fold", [True, False])
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_each_row_equals_the_row_alone(unet, networks, scenario, fold):
    chains = SCENARIOS[scenario](networks)
    inputs = unet_inputs(batch=4, seed=1)
    with attention.activate_rows(unet, chains, fold=fold):
        batch = run(unet, inputs)
    for index, chain in enumerate(chains):
        own = alone(unet, chain, row(inputs, index), fold)
        assert max_difference(batch[index:index + 1], own) <= TOLERANCE, (scenario, index)
        # the test can fail: the next row's chain gives this row another result
        other = alone(unet, chains[(index + 1) % len(chains)], row(inputs, index), fold)
        assert max_difference(own, other) > 1e-3, (scenario, index)


def test_layers_run_as_planned(unet, networks):
    """Self-attention widths where every row has the same foldable chain stay folded;
    widths no row's network reaches stay untouched; only the others group rows."""
    attn1 = {id(m) for name, m in unet.named_modules() if name.endswith(".attn1")}
    attn2 = {id(m) for name, m in unet.named_modules() if name.endswith(".attn2")}
    weights = {id(m): m.to_k.weight for name, m in unet.named_modules() if name.endswith((".attn1", ".attn2"))}
    with attention.activate_rows(unet, SCENARIOS["shared_self"](networks)) as chain:
        assert chain.folded == attn1 and set(chain.rows.layers) == attn2
        assert all(fold_of(m.to_k.weight) is not None for name, m in unet.named_modules() if name.endswith(".attn1"))
        assert len({id(layer) for layer in chain.rows.layers.values()}) == 1  # one grouping: the text context once
    with attention.activate_rows(unet, [[], [(networks["text"], 1.0)]]) as chain:
        assert not chain.folded and set(chain.rows.layers) == attn2  # attn1: untouched
        for name, module in unet.named_modules():
            if name.endswith(".attn1"):
                assert module.to_k.weight is weights[id(module)]
                assert chain.view(module, 2, None) is module
    with attention.activate_rows(unet, SCENARIOS["shared_self"](networks), fold=False) as chain:
        assert not chain.folded and set(chain.rows.layers) == attn1 | attn2


@pytest.mark.parametrize("fold", [True, False])
@pytest.mark.parametrize("which", ["a", "b"])
def test_equal_rows_are_exactly_activate(unet, networks, which, fold):
    network = networks[which]
    inputs = unet_inputs(batch=3, seed=2)
    with attention.activate(unet, [(network, 0.8)], fold=fold) as expected_chain:
        expected = run(unet, inputs)
    rows = [[(network, 0.8)], [(network, 0.8), (networks["text"], 0.0)], [(network, 0.8)]]  # multiplier 0 drops out
    with attention.activate_rows(unet, rows, fold=fold) as chain:
        assert chain is expected_chain  # the same object, or None when every layer folded
        assert chain is None or chain.rows is None
        got = run(unet, inputs)
    assert torch.equal(got, expected)
    assert max_difference(got, run(unet, inputs)) > 1e-3  # the network does change the output


def test_cfg_layout(unet, networks):
    """8 rows = [uncond of images 0..3] + [cond of images 0..3], as a sampling loop lays
    them out; each image equals its own 2-row batch under `activate`."""
    a, b = networks["a"], networks["b"]
    chains = [[], [(a, 1.0)], [(b, 0.8)], [(a, 0.7), (b, 0.5), (networks["text"], 0.5)]]
    sample, timestep, cond = unet_inputs(batch=4, seed=3)
    uncond = torch.randn(cond.shape, generator=torch.Generator().manual_seed(4))
    with attention.activate_rows(unet, chains + chains):
        batch = run(unet, (torch.cat([sample, sample]), timestep, torch.cat([uncond, cond])))
    for image, chain in enumerate(chains):
        pair = (sample[image:image + 1].repeat(2, 1, 1, 1), timestep,
                torch.cat([uncond[image:image + 1], cond[image:image + 1]]))
        expected = alone(unet, chain, pair, True)
        assert max_difference(batch[[image, 4 + image]], expected) <= TOLERANCE, image
        assert max_difference(batch[image], batch[4 + image]) > 1e-3  # uncond and cond differ


def test_base_weights_and_state_come_back_even_on_error(unet, networks):
    inputs = unet_inputs(batch=4, seed=5)
    stock_digest = weights_digest(unet)
    stock = run(unet, inputs)
    for failing in (False, True):
        with pytest.raises(RuntimeError) if failing else contextlib.nullcontext():
            with attention.activate_rows(unet, SCENARIOS["shared_self"](networks)) as chain:
                assert any(fold_of(p) is not None for p in unet.parameters())  # folded inside
                assert max_difference(run(unet, inputs), stock) > 1e-3
                if failing:
                    raise RuntimeError("inside the block")
        assert weights_digest(unet) == stock_digest
        assert not any(fold_of(p) is not None for p in unet.parameters())
        assert chain.rows is None and chain.networks == () and not chain.folded
        assert torch.equal(run(unet, inputs), stock)


def test_a_batch_of_another_size_is_refused(unet, networks):
    chains = SCENARIOS["mixed"](networks)
    with attention.activate_rows(unet, chains):
        with pytest.raises(HypernetError, match="activated for 4 rows; the UNet got 2"):
            run(unet, unet_inputs(batch=2))
    with attention.activate_rows(unet, [chains[1]] * 4):  # equal rows: `activate`, any batch size
        run(unet, unet_inputs(batch=2))
    with pytest.raises(HypernetError, match="no rows"):
        with attention.activate_rows(unet, []):
            pass


def test_nested_activations_restore(unet, networks):
    a, b = networks["a"], networks["b"]
    chains = SCENARIOS["mixed"](networks)
    inputs = unet_inputs(batch=4, seed=6)
    stock = run(unet, inputs)
    only_b = alone(unet, [(b, 1.0)], inputs, True)
    with attention.activate(unet, [(a, 1.0)]):  # folds everywhere
        outer = run(unet, inputs)
        with attention.activate_rows(unet, chains):
            rows = run(unet, inputs)
            with attention.activate(unet, [(b, 1.0)]):
                assert max_difference(run(unet, inputs), only_b) <= TOLERANCE
            assert torch.equal(run(unet, inputs), rows)
            with attention.activate_rows(unet, chains[::-1]):
                reversed_rows = run(unet, inputs)
            assert torch.equal(run(unet, inputs), rows)
        assert torch.equal(run(unet, inputs), outer)
    assert torch.equal(run(unet, inputs), stock)
    for index, chain in enumerate(chains):
        assert max_difference(rows[index:index + 1], alone(unet, chain, row(inputs, index), True)) <= TOLERANCE
    assert max_difference(reversed_rows[0:1], alone(unet, chains[3], row(inputs, 0), True)) <= TOLERANCE


def test_the_text_context_is_computed_once_per_group(unet, networks):
    text = networks["text"]
    calls = []
    module = text.pair(TEXT_WIDTH)[0]
    handle = module.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    inputs = unet_inputs(batch=4, seed=7)
    try:
        with attention.activate_rows(unet, SCENARIOS["text_only"](networks)):
            run(unet, inputs)
            run(unet, inputs)  # a second step, the same context
    finally:
        handle.remove()
    assert calls == [1, 1]  # rows 0 and 3 are two groups at the text width; 7 layers, 2 steps
