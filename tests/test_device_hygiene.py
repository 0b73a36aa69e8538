"""Device hygiene a CPU run can check: every tensor the model, the searches and the training step make names its
device, source lengths stay on the host, and the host-side packing is PyTorch's packing."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq_lit.modules.packing import pack, unpack
from seq2seq_lit.search import BeamSearch, GreedySearch

from .device_checks import FactoriesWithoutDevice, ragged_batch, tiny_module

CONFIGS = [
    [],  # the default model: general attention, Luong decoder with input feeding
    ["model/attention=additive", "model/decoder=bahdanau"],
    ["model/attention=location", "model.encoder.lstm_impl=torch", "model.decoder.lstm_impl=torch"],
    ["model/attention=local_p", "model.encoder.reverse_source=true", "model.bridge=learned"],
    ["model/attention=multihead", "model.encoder.rnn_type=gru", "model.decoder.rnn_type=gru"],
    ["model/attention=none", "model.decoder.input_feeding=false", "model.encoder.bidirectional=bottom",
     "model.encoder.num_layers=2", "model.bridge=learned"],
]


@pytest.mark.parametrize("overrides", CONFIGS, ids=lambda o: ",".join(o) or "default")
@pytest.mark.slow
def test_training_and_search_make_every_tensor_on_a_named_device(overrides, tmp_path):
    module = tiny_module(tmp_path, *overrides)
    batch = ragged_batch()
    check = FactoriesWithoutDevice()
    with check:
        module.train()
        for ratio, parallel in ((1.0, False), (0.5, False), (0.5, True)):  # teacher forcing, scheduled sampling
            module.teacher_forcing.parallel = parallel
            loss, num_tokens, _ = module._token_nll(batch, label_smoothing=0.1, teacher_forcing_ratio=ratio)
            loss.backward()
            assert module._nonfinite.update_allowed(loss, step=0, epoch=0, batch_idx=0)
        module.eval()
        for search in (GreedySearch(max_length=12), BeamSearch(beam_size=3, n_best=2, alpha=1.0, beta=0.2, max_length=12)):
            hypotheses = search(module.net, batch.src, batch.src_lengths, bos_id=2, eos_id=3)
    assert check.calls == []
    assert num_tokens.dim() == 0 and int(num_tokens) == int((batch.tgt_out != 0).sum())
    assert len(hypotheses.token_lists()) == 2 * len(batch)


def test_the_device_check_sees_a_factory_without_a_device_in_the_package_only():
    from seq2seq_lit.modules import encoder

    namespace: dict = {}
    source = "import torch\ndef stray():\n    return torch.zeros(3), torch.zeros(3, device='cpu')\n"
    exec(compile(source, encoder.__file__, "exec"), namespace)  # code that the check takes for the encoder's
    check = FactoriesWithoutDevice()
    with check:
        namespace["stray"]()
        torch.arange(3)  # this test's own call: not the package's
    assert check.calls == ["seq2seq_lit/modules/encoder.py:3 torch.zeros"]


def test_batches_keep_their_source_lengths_and_indices_on_the_host(tmp_path):
    module = tiny_module(tmp_path)
    moved = module.transfer_batch_to_device(ragged_batch(), torch.device("meta"), 0)  # Lightning's move
    assert moved.src.device.type == moved.tgt_in.device.type == moved.tgt_out.device.type == "meta"
    assert moved.src_lengths.device.type == moved.indices.device.type == "cpu"
    assert moved.src_lengths.tolist() == [4, 6, 8, 10, 12] and moved.indices.tolist() == [0, 1, 2, 3, 4]


def test_pack_and_unpack_give_pytorchs_packed_sequence_and_padding():
    torch.manual_seed(0)
    lengths = torch.tensor([4, 7, 1, 7, 3])
    padded = torch.randn(5, 9, 3, requires_grad=True)
    ours = pack(padded, lengths)
    theirs = pack_padded_sequence(padded, lengths, batch_first=True, enforce_sorted=False)
    assert torch.equal(ours.batch_sizes, theirs.batch_sizes) and torch.equal(ours.data, theirs.data)
    assert torch.equal(ours.unsorted_indices, theirs.unsorted_indices)
    mapped = ours._replace(data=ours.data * 2)
    expected, _ = pad_packed_sequence(theirs._replace(data=theirs.data * 2), batch_first=True, total_length=9)
    assert torch.equal(unpack(mapped, total_length=9), expected)
    unpack(mapped, total_length=9).sum().backward()
    real = (torch.arange(9) < lengths.unsqueeze(1)).unsqueeze(-1).expand_as(padded)  # (B, S, E)
    assert torch.equal(padded.grad, torch.where(real, 2.0, 0.0))
