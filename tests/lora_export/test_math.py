"""The algebra behind the LoRA export, without a model: affine maps, the LayerNorm identity
that folds a constant into a linear map, the key-shift invariance, and the truncation."""

import pytest
import torch
from torch import nn

from hypernet.errors import HypernetError
from hypernet.lora_export.deltas import affine_map, is_affine
from hypernet.lora_export.lowrank import check_rank_request, factorize
from hypernet.lora_export.targets import LayerNormShape
from hypernet.network import Hypernetwork


def _randomised(network: Hypernetwork, seed: int = 0) -> Hypernetwork:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return network.eval()


@pytest.mark.parametrize("structure,dropout", [((1, 2, 1), None), ((1, 3, 0.5, 2, 1), (0, 0.3, 0.3, 0.3, 0))])
def test_a_linear_network_collapses_to_one_affine_map(structure, dropout):
    network = _randomised(Hypernetwork.create(sizes=[12], layer_structure=structure, dropout_structure=dropout))
    x = torch.randn(5, 12)
    for module in network.pair(12):
        matrix, offset = affine_map(module)
        expected = module(x, 0.7)
        assert torch.allclose(x + 0.7 * (x.double() @ matrix.T + offset).float(), expected, atol=1e-5)
    assert is_affine(network)


@pytest.mark.parametrize("options", [{"activation": "relu"}, {"layer_norm": True}, {"activation": "prelu"}])
def test_activations_and_layer_norms_are_not_affine(options):
    network = Hypernetwork.create(sizes=[8], **options)
    assert affine_map(network.pair(8)[0]) is None and not is_affine(network)


def test_layer_norm_outputs_satisfy_the_fold_identity():
    """⟨1/γ, x⟩ = Σβ/γ for every LayerNorm output x: a constant is linear in x there."""
    norm = nn.LayerNorm(16)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.3 * torch.randn(16))
        norm.bias.copy_(0.5 * torch.randn(16))
    shape = LayerNormShape(norm.weight.double().detach(), norm.bias.double().detach())
    x = norm(3 * torch.randn(100, 16) + 2).double()
    assert torch.allclose(x @ shape.direction, torch.full((100,), shape.constant, dtype=torch.float64), atol=1e-5)
    constant = torch.randn(4, dtype=torch.float64)
    folded = torch.outer(constant, shape.direction) / shape.constant
    assert torch.allclose(x @ folded.T, constant.expand(100, 4), atol=1e-4)
    # the model of its second moment gives ⟨w, x⟩² = s² too
    root = shape.root(centred=False)
    assert float((shape.direction @ root).square().sum()) == pytest.approx(shape.constant**2, rel=1e-9)
    assert float((shape.direction @ shape.root(centred=True)).square().sum()) == pytest.approx(0, abs=1e-9)


def test_a_shift_shared_by_all_keys_changes_no_attention_output():
    query, key, value = torch.randn(2, 7, 8), torch.randn(2, 9, 8), torch.randn(2, 9, 8)
    shift = torch.randn(8)
    plain = torch.nn.functional.scaled_dot_product_attention(query, key, value)
    shifted = torch.nn.functional.scaled_dot_product_attention(query, key + shift, value)
    assert torch.allclose(plain, shifted, atol=1e-5)
    # while a shift of the values moves every output by exactly that shift
    moved = torch.nn.functional.scaled_dot_product_attention(query, key, value + shift)
    assert torch.allclose(moved, plain + shift, atol=1e-5)


def test_full_rank_is_exact_and_a_rank_keeps_the_largest_singular_values():
    delta = torch.randn(10, 6, dtype=torch.float64)
    full = factorize(delta)
    assert full.rank == 6 and full.error == 0 and torch.allclose(full.delta(), delta)
    singular = torch.linalg.svdvals(delta)
    two = factorize(delta, rank=2)
    assert two.rank == 2
    assert two.error == pytest.approx(float((singular[2:] ** 2).sum().sqrt() / singular.norm()), rel=1e-9)
    assert torch.linalg.norm(delta - two.delta()) == pytest.approx(float((singular[2:] ** 2).sum().sqrt()), rel=1e-9)
    assert factorize(delta, rank=50).rank == 6  # capped at full rank


def test_an_error_bound_picks_the_smallest_rank_meeting_it():
    u, _ = torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64))
    delta = u @ torch.diag(torch.tensor([8.0, 4, 2, 1, 0.5, 0.25, 0.1, 0.05], dtype=torch.float64)) @ v.T
    for bound in (0.3, 0.1, 0.01):
        kept = factorize(delta, error=bound)
        assert kept.error <= bound
        assert kept.rank == 1 or factorize(delta, rank=kept.rank - 1).error > bound


def test_the_truncation_weighs_the_inputs_it_will_see():
    """With inputs that never vary along a direction, rank goes where they do."""
    delta = torch.diag(torch.tensor([5.0, 1.0], dtype=torch.float64))
    root = torch.diag(torch.tensor([0.0, 1.0], dtype=torch.float64))  # the first input is always 0
    kept = factorize(delta, rank=1, root=root)
    assert torch.allclose(kept.delta(), torch.diag(torch.tensor([0.0, 1.0], dtype=torch.float64)), atol=1e-9)
    assert kept.error == pytest.approx(0, abs=1e-9)
    assert torch.allclose(factorize(delta, rank=1).delta()[0, 0], torch.tensor(5.0, dtype=torch.float64))


@pytest.mark.parametrize("rank,error,message", [(2, 0.1, "not both"), (0, None, "at least 1"), (None, 1.0, "below 1")])
def test_bad_rank_requests_are_refused(rank, error, message):
    with pytest.raises(HypernetError, match=message):
        check_rank_request(rank, error)
