"""Dynamic int8 quantization of a trained model, for decoding on a CPU (``quantize=int8`` in translate and evaluate).

Shapes: B batch, T steps, F input size, H hidden size, L layers, G = 4H gates.

PyTorch's dynamic quantization (``torch.ao.quantization.quantize_dynamic``; Jacob et al. 2018, "Quantization and
Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference", Sec. 2) stores the weights of the
linear layers, LSTMs and GRUs as int8 (linear layers: one scale per output row) and quantizes their inputs at run
time from each call's range; the products run in int8 with int32 accumulation (fbgemm). Embeddings, attention
energies and softmaxes stay fp32. Speeds and BLEU: docs/extending.md and the benchmark (bench/train_decode.py).

The decoder's LSTM is first rewritten as a :class:`LinearLSTM` (same weights), whose step is one product of
``[x_t; h_{t-1}]`` with ``[W_ih W_hh]`` per layer; quantized, that is one int8 product per step, where PyTorch's
quantized LSTM makes two and is slower per step than the whole rest of the decoder step.

The result is for decoding only: its ``state_dict`` no longer matches the checkpoint's, and it cannot be trained.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..modules.stepwise_lstm import layer_weights, lstm_cell

QUANTIZE_CHOICES = ("none", "int8")


class LinearLSTM(nn.Module):
    """A unidirectional ``nn.LSTM`` (``batch_first``, no ``proj_size``) computed with one ``nn.Linear`` per layer:
    ``gates_t = [x_t; h_{t-1}] [W_ih W_hh]^T + b_ih + b_hh``, then the cell (PyTorch's LSTM formulation).

    Same call and results as the ``nn.LSTM`` it is built from (up to float rounding), for inference: no dropout
    between layers.

    Args:
        lstm: the trained ``nn.LSTM`` whose weights are copied.

    Raises:
        ConfigError: for a bidirectional LSTM, one with ``proj_size``, or one not ``batch_first``.
    """

    def __init__(self, lstm: nn.LSTM) -> None:
        super().__init__()
        if lstm.bidirectional or lstm.proj_size or not lstm.batch_first:
            raise ConfigError(f"LinearLSTM needs a unidirectional, batch_first LSTM without proj_size, not {lstm}")
        self.input_size, self.hidden_size, self.num_layers = lstm.input_size, lstm.hidden_size, lstm.num_layers
        self.layers = nn.ModuleList()
        for layer in range(lstm.num_layers):
            w_ih, w_hh, bias = layer_weights(lstm, layer)
            linear = nn.Linear(w_ih.size(1) + w_hh.size(1), w_ih.size(0), bias=lstm.bias)
            with torch.no_grad():
                linear.weight.copy_(torch.cat([w_ih, w_hh], dim=1))
                if lstm.bias:
                    linear.bias.copy_(bias)
            self.layers.append(linear)

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """``input`` ``(B, T, F)``, ``hx`` the initial ``(h, c)`` ``(L, B, H)`` each (zeros if None).

        Returns the top layer's outputs ``(B, T, H)`` and the final ``(h, c)``.
        """
        if hx is None:
            zeros = input.new_zeros(self.num_layers, input.size(0), self.hidden_size)
            hx = (zeros, zeros)
        hs, cs = list(hx[0].unbind(0)), list(hx[1].unbind(0))
        outputs = []
        for x in input.unbind(1):
            for layer, linear in enumerate(self.layers):
                hs[layer], cs[layer], _, _ = lstm_cell(linear(torch.cat([x, hs[layer]], dim=-1)), cs[layer])
                x = hs[layer]
            outputs.append(x)
        return torch.stack(outputs, dim=1), (torch.stack(hs), torch.stack(cs))


def check_quantize(quantize: str | None, device: torch.device | str) -> str:
    """Validate a ``quantize`` setting (None means ``none``) for decoding on ``device``.

    Raises:
        ConfigError: for a value other than ``none`` or ``int8``, or ``int8`` on a device other than the CPU.
    """
    quantize = "none" if quantize is None else str(quantize)
    if quantize not in QUANTIZE_CHOICES:
        raise ConfigError(f"quantize={quantize!r}; valid choices: {', '.join(QUANTIZE_CHOICES)}")
    if quantize == "int8" and torch.device(device).type != "cpu":
        raise ConfigError(f"quantize=int8 runs on the CPU only, not on {device}; fix: device=cpu, or quantize=none")
    return quantize


def quantize_int8(net: nn.Module) -> nn.Module:
    """A copy of ``net`` (a :class:`~seq2seq_lit.modules.Seq2Seq`, on the CPU) for int8 decoding: the decoder's
    LSTM made a :class:`LinearLSTM`, then every ``nn.Linear``, ``nn.LSTM`` and ``nn.GRU`` dynamically quantized to
    int8 (per output row for linear layers). ``net`` itself is left as it is.
    """
    net = copy.deepcopy(net).eval()
    if isinstance(net.decoder.rnn, nn.LSTM):
        net.decoder.rnn = LinearLSTM(net.decoder.rnn)
    quant = torch.ao.quantization
    qconfig = {
        nn.Linear: quant.per_channel_dynamic_qconfig,
        nn.LSTM: quant.default_dynamic_qconfig,
        nn.GRU: quant.default_dynamic_qconfig,
    }
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao; it is the API in torch 2.13
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_(tensor|channel).*deprecated", category=UserWarning)
        return quant.quantize_dynamic(net, qconfig, dtype=torch.qint8)


def quantize_for_decoding(module: nn.Module, quantize: str | None) -> str:
    """Apply a ``quantize`` setting (``none`` or ``int8``) to a loaded
    :class:`~seq2seq_lit.lit_module.Seq2SeqLitModule`: with ``int8`` its network is replaced by
    :func:`quantize_int8`'s copy. Returns the validated setting.

    Raises:
        ConfigError: as :func:`check_quantize`.
    """
    quantize = check_quantize(quantize, module.device)
    if quantize == "int8":
        module.net = quantize_int8(module.net)
    return quantize
