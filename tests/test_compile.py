"""``model.compile`` and ``data.pad_to_multiple``: padded batches give the same loss, the compiled training step the
same losses and gradients as the eager one (CPU, tiny model), and bad settings are refused with the fix."""

from __future__ import annotations

import pytest
import torch

from seq2seq_lit.data.batching import collate
from seq2seq_lit.errors import ConfigError
from seq2seq_lit.lit_module import token_nll
from seq2seq_lit.utils.compile import check_compile_mode

from .conftest import TINY, compose_train, reverse_data_overrides

# The stepwise LSTM (CPU training default) records its own tape, which torch.compile cannot trace; nn.LSTM it can.
EAGER_LSTM = ["model.encoder.lstm_impl=torch", "model.decoder.lstm_impl=torch"]


def test_pad_to_multiple_rounds_both_sides_up_and_keeps_the_lengths():
    examples = [(0, [5, 6, 7], [8, 9]), (1, [5], [8, 9, 10, 11, 12])]
    plain, padded = collate(examples), collate(examples, pad_to_multiple=4)
    assert plain.src.shape == (2, 4) and plain.tgt_out.shape == (2, 6)
    assert padded.src.shape == (2, 4) and padded.tgt_in.shape == (2, 8) and padded.tgt_out.shape == (2, 8)
    assert torch.equal(padded.src_lengths, plain.src_lengths)
    assert torch.equal(padded.tgt_out[:, :6], plain.tgt_out) and (padded.tgt_out[:, 6:] == 0).all()
    assert collate(examples, pad_to_multiple=1).src.shape == plain.src.shape


@pytest.mark.parametrize("mode", ["fast", "", "reduce_overhead"])
def test_an_unknown_compile_mode_names_the_key_and_the_modes(mode):
    with pytest.raises(ConfigError, match=r"model.compile=.*fix: use null \(eager\) or one of default, reduce-overhead"):
        check_compile_mode(mode)


def _module_and_batches(reverse_corpus, tmp_path, extra: list[str], n: int = 3):
    from seq2seq_lit.build import build_data, build_module, prepare_run

    cfg = compose_train([*TINY, *reverse_data_overrides(reverse_corpus), *EAGER_LSTM, *extra], tmp_path / "run")
    prepare_run(cfg)
    datamodule = build_data(cfg.data)
    loader = iter(datamodule.train_dataloader())
    return cfg, build_module(cfg.model, datamodule), [next(loader) for _ in range(n)]


def test_compile_with_a_changing_teacher_forcing_ratio_is_refused(reverse_corpus, tmp_path):
    with pytest.raises(Exception, match="model.compile=default with model/teacher_forcing=Linear.*fix: model/teacher_forcing=constant"):
        _module_and_batches(reverse_corpus, tmp_path, ["model.compile=default", "model/teacher_forcing=linear"], n=0)


def test_pad_to_multiple_zero_is_refused(reverse_corpus, tmp_path):
    with pytest.raises(Exception, match=r"data.pad_to_multiple=0; fix: use an integer of at least 1"):
        _module_and_batches(reverse_corpus, tmp_path, ["data.pad_to_multiple=0"], n=0)


def test_padding_to_a_multiple_leaves_the_loss_unchanged(reverse_corpus, tmp_path):
    _, module, _ = _module_and_batches(reverse_corpus, tmp_path, [], n=0)
    examples = [(i, [5 + i % 7] * (3 + i % 5), [6 + i % 5] * (2 + i % 6)) for i in range(6)]
    module.train()
    plain = module._token_nll(collate(examples), 0.0, 1.0)
    padded = module._token_nll(collate(examples, pad_to_multiple=16), 0.0, 1.0)
    assert padded[1] == plain[1]  # the same tokens count
    torch.testing.assert_close(padded[0], plain[0], rtol=1e-5, atol=1e-6)


def _train(module, batches) -> tuple[list[float], list[torch.Tensor]]:
    """Losses of a few Adam steps on ``batches`` (the module's own loss function), and the last gradients."""
    optimizer = torch.optim.Adam(module.parameters(), lr=0.005)
    module.train()
    losses = []
    for batch in batches:
        optimizer.zero_grad(set_to_none=True)
        loss, _, _ = module._token_nll(batch, 0.0, 1.0)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, [p.grad.clone() for p in module.parameters() if p.grad is not None]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_the_compiled_step_trains_as_the_eager_one(reverse_corpus, tmp_path, mode):
    """Inductor on the CPU (reduce-overhead's CUDA graphs need a GPU: there it runs as default plus the copies and
    step marks of compile_step); batches padded to one shape, so it compiles once."""
    cfg, eager, batches = _module_and_batches(reverse_corpus, tmp_path, ["data.pad_to_multiple=16"])
    _, compiled, _ = _module_and_batches(reverse_corpus, tmp_path, ["data.pad_to_multiple=16", f"model.compile={mode}"], n=0)
    compiled.load_state_dict(eager.state_dict())
    assert {(b.src.size(1), b.tgt_out.size(1)) for b in batches} == {(16, 16)}
    eager_losses, eager_grads = _train(eager, batches)
    compiled_losses, compiled_grads = _train(compiled, batches)
    assert compiled._train_nll is not token_nll and eager._train_nll is token_nll
    torch.testing.assert_close(compiled_losses, eager_losses, rtol=1e-4, atol=1e-5)
    for got, want in zip(compiled_grads, eager_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-5)
    assert eager_losses[-1] < eager_losses[0]  # it trains


def test_the_recompile_limit_setting_exists_in_this_torch():
    import torch._dynamo.config as dynamo_config

    from seq2seq_lit.utils.lightning_internals import raise_recompile_limit

    name = "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"
    before = getattr(dynamo_config, name)
    try:
        raise_recompile_limit(before + 5)
        assert getattr(dynamo_config, name) == before + 5
    finally:
        setattr(dynamo_config, name, before)
