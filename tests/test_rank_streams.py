"""Per-rank random streams: different dropout masks and coins on each data-parallel process, one shared data order."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from seq2seq_lit.callbacks import RankRandomStreams
from seq2seq_lit.callbacks.rank_streams import rank_seed
from seq2seq_lit.data import BucketBatchSampler


def draws_on_rank(rank: int, seed: int | None = 1234) -> tuple[torch.Tensor, torch.Tensor]:
    """A dropout mask (p=0.2) and scheduled-sampling coins drawn right after fitting starts on process ``rank``."""
    torch.manual_seed(1234)  # seed_everything(seed): the same on every process
    RankRandomStreams(seed).setup(SimpleNamespace(global_rank=rank), None, "fit")
    mask = torch.nn.functional.dropout(torch.ones(64, 32), p=0.2, training=True) > 0
    coins = torch.rand(64, 20) < 0.7
    return mask, coins


def test_two_ranks_draw_different_dropout_masks_and_coins_and_each_rank_the_same_every_time():
    (mask0, coins0), (mask1, coins1) = draws_on_rank(0), draws_on_rank(1)
    assert not torch.equal(mask0, mask1) and not torch.equal(coins0, coins1)
    again0, again_coins0 = draws_on_rank(0)
    assert torch.equal(mask0, again0) and torch.equal(coins0, again_coins0)
    assert 0.7 < mask0.float().mean() < 0.9  # still dropout with p = 0.2


def test_an_unseeded_run_and_other_stages_leave_the_generators_alone():
    torch.manual_seed(5)
    expected = torch.rand(8)
    for callback, stage in ((RankRandomStreams(None), "fit"), (RankRandomStreams(1234), "test")):
        torch.manual_seed(5)
        callback.setup(SimpleNamespace(global_rank=1), None, stage)
        assert torch.equal(torch.rand(8), expected)


def test_the_data_order_does_not_depend_on_the_rank_streams():
    lengths = [(i * 7) % 23 + 1 for i in range(200)]
    orders = []
    for rank in (0, 1):
        draws_on_rank(rank)
        orders.append(BucketBatchSampler(lengths, 16, seed=3, bucket_factor=2).batches(0))
    assert orders[0] == orders[1]


@pytest.mark.parametrize("seed", [0, 1234, 2**31])
def test_rank_seeds_are_distinct_32_bit_seeds(seed):
    seeds = {rank_seed(seed, rank) for rank in range(64)} | {rank_seed(seed + 1, 0)}
    assert len(seeds) == 65 and all(0 <= s < 2**32 for s in seeds)
