"""What only a GPU shows: no host sync in a training step, the same decoding as on the CPU, mixed precision.
Marked ``cuda``: skipped without a CUDA device; ``bench/gpu_check.sh`` runs them first."""

from __future__ import annotations

import pytest
import torch

from seq2seq_lit.search import BeamSearch, GreedySearch

from .device_checks import ragged_batch, tiny_module

pytestmark = pytest.mark.cuda
CUDA = torch.device("cuda")


@pytest.fixture
def sync_is_an_error():
    """Any operation that waits for the device (a read of a device value, a blocking copy) raises."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    yield
    torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("overrides", [[], ["model/teacher_forcing=inverse_sigmoid", "model/attention=additive"]])
def test_a_training_step_on_cuda_never_waits_for_the_device(overrides, tmp_path, request):
    module = tiny_module(tmp_path, *overrides, "model.encoder.lstm_impl=torch", "model.decoder.lstm_impl=torch").to(CUDA)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3, foreach=True)
    batch = ragged_batch().to(CUDA)
    request.getfixturevalue("sync_is_an_error")
    for step in range(3):
        loss, _ = module._token_nll(batch, label_smoothing=0.1, teacher_forcing_ratio=0.6 if overrides else 1.0)
        assert module._nonfinite.update_allowed(loss, step, epoch=0, batch_idx=step)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 5.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss)


def test_greedy_and_beam_on_cuda_decode_as_on_the_cpu(tmp_path):
    module = tiny_module(tmp_path).eval()
    batch = ragged_batch()
    for search in (GreedySearch(max_length=12), BeamSearch(beam_size=3, alpha=1.0, max_length=12)):
        on_cpu = search(module.net, batch.src, batch.src_lengths, 2, 3).token_lists()
        module.to(CUDA)
        moved = batch.to(CUDA)
        on_cuda = search(module.net, moved.src, moved.src_lengths, 2, 3).token_lists()
        module.to("cpu")
        assert on_cuda == on_cpu


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_attention_weights_stay_float32_and_normalized_under_autocast(dtype, tmp_path):
    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    module = tiny_module(tmp_path).to(CUDA)
    batch = ragged_batch().to(CUDA)
    with torch.autocast("cuda", dtype=dtype):
        logits, weights = module.net(batch.src, batch.src_lengths, batch.tgt_in)
    assert weights.dtype == torch.float32 and torch.isfinite(logits).all()
    assert torch.allclose(weights.sum(-1), torch.ones_like(weights[..., 0]), atol=1e-3)
