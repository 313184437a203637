"""LowRankNet and arm pages (lrl_core/model.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lrl_core.model import LowRankNet, arm_pages


def explicit_outcomes(net: LowRankNet, x: torch.Tensor, arms: torch.Tensor) -> torch.Tensor:
    """``v(x)' A_j e_g`` one row and metric at a time: the definition."""
    v = net.embed(x)
    A, E = net.metric_operators, net.arm_embeddings
    return torch.stack(
        [torch.stack([v[b] @ A[j] @ E[arms[b]] for j in range(A.shape[0])]) for b in range(x.shape[0])]
    )


@pytest.mark.parametrize("extractor", ["mlp", "linear"])
@pytest.mark.parametrize("n_arms", [3, 50])  # fewer and more arms than rows: both code paths
def test_forward_matches_definition(extractor, n_arms):
    g = torch.Generator().manual_seed(1)
    net = LowRankNet(7, n_arms, 4, d=5, extractor=extractor, hidden=9, generator=g)
    x = torch.randn(20, 7, generator=g)
    arms = torch.randint(0, n_arms, (20,), generator=g)
    torch.testing.assert_close(net(x, arms), explicit_outcomes(net, x, arms))


def test_cate_is_outcome_difference():
    g = torch.Generator().manual_seed(2)
    net = LowRankNet(6, 8, 3, d=4, generator=g)
    x = torch.randn(30, 6, generator=g)
    arms, controls = torch.randint(0, 8, (30,), generator=g), torch.randint(0, 8, (30,), generator=g)
    v = net.embed(x)
    torch.testing.assert_close(net.cate(v, arms, controls), net.outcomes(v, arms) - net.outcomes(v, controls))


def test_paged_outcomes_equal_forward_values_and_gradients():
    rng = np.random.default_rng(3)
    n_arms, batch = 11, 64
    arms = rng.integers(0, n_arms, size=300)  # 5 batches, the last one short
    pages = arm_pages(arms, batch, n_arms)
    arms = arms[pages.order]
    # Every batch keeps its rows; slots are distinct within a batch; pages hold one arm.
    assert np.array_equal(np.sort(pages.order[:batch]), np.arange(batch))
    for b, s in enumerate(range(0, arms.size, batch)):
        slots = pages.slots[s : s + batch]
        assert np.unique(slots).size == slots.size
        assert np.array_equal(pages.page_arms[b][slots // pages.page_rows], arms[s : s + batch])

    g = torch.Generator().manual_seed(4)
    net = LowRankNet(5, n_arms, 3, d=4, generator=g)
    x = torch.randn(arms.size, 5, generator=g)
    target = torch.randn(arms.size, 3, generator=g)
    for b, s in enumerate(range(0, arms.size, batch)):
        xb, ab = x[s : s + batch], torch.from_numpy(arms[s : s + batch])
        grads = []
        for paged in (False, True):
            net.zero_grad()
            v = net.embed(xb)
            if paged:
                out = net.paged_outcomes(
                    v, torch.from_numpy(pages.slots[s : s + batch]), torch.from_numpy(pages.page_arms[b]),
                    pages.page_rows,
                )
            else:
                out = net.outcomes(v, ab)
            ((out - target[s : s + batch]) ** 2).sum().backward()
            grads.append([p.grad.clone() for p in net.parameters()])
        for plain, paged in zip(*grads):
            torch.testing.assert_close(plain, paged)


@pytest.mark.parametrize("extractor", ["mlp", "linear"])
def test_initial_outputs_have_order_one_variance(extractor):
    g = torch.Generator().manual_seed(5)
    net = LowRankNet(40, 30, 4, d=32, extractor=extractor, hidden=64, generator=g)
    with torch.no_grad():
        out = net(torch.randn(4000, 40, generator=g), torch.randint(0, 30, (4000,), generator=g))
    assert 0.2 < out.var().item() < 5.0


def test_unknown_extractor_is_rejected():
    with pytest.raises(ValueError, match="extractor"):
        LowRankNet(3, 2, 1, extractor="transformer")
