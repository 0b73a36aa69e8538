"""Recurrent encoder over packed sequences.

Shapes: B batch, S source length, E embedding size, H hidden size (per direction, except for a bidirectional bottom
layer, see below), D directions of a layer (1 or 2), L layers, K = the encoder's output size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .packing import pack, unpack
from .rnn_state import RNNState, map_state, rnn_class
from .stepwise_lstm import check_impl, packed_lstm, use_stepwise

BIDIRECTIONAL_CHOICES = (True, False, "bottom")


def reverse_padded(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse the first ``lengths[b]`` positions of each row of ``x`` ``(B, S, *)``, leaving padding in place."""
    positions = torch.arange(x.size(1), device=x.device).unsqueeze(0)  # (1, S)
    lengths = lengths.to(x.device, non_blocking=True).unsqueeze(1)  # (B, 1); host lengths: no wait for the device
    index = torch.where(positions < lengths, lengths - 1 - positions, positions)  # (B, S)
    return x.gather(1, index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x))


class RNNEncoder(nn.Module):
    """A stack of RNN / GRU / LSTM layers that reads packed sequences, so padding never enters it.

    Args:
        input_size: E, the source embedding size.
        hidden_size: H. With ``bidirectional=True`` each layer has H units per direction and outputs ``2H``; with
            ``False`` it outputs H; with ``"bottom"`` (GNMT, Wu et al. 2016, Sec. 3.1) only the first layer is
            bidirectional, with H/2 units per direction, so every layer outputs H.
        num_layers: L.
        rnn_type: ``rnn``, ``gru`` or ``lstm``.
        bidirectional: ``True``, ``False`` or ``"bottom"`` (see ``hidden_size``; Bahdanau et al. 2015, Sec. 3.2).
        dropout: on the input of every layer above the first.
        residual: add each layer's input to its output wherever their sizes match, i.e. from the second layer on
            (Wu et al. 2016, Sec. 3.2, where residuals start at the third of eight layers).
        reverse_source: read each source sentence backwards (Sutskever et al. 2014, Sec. 3.3); the outputs are put back
            in source order, so attention weights stay aligned with the source tokens.
        lstm_impl: how LSTM layers run: ``torch`` (``nn.LSTM`` on the packed batch), ``stepwise``
            (:func:`~seq2seq_lit.modules.stepwise_lstm.packed_lstm`: both directions in one product per step, the
            weight gradient of all steps in one product) or ``auto`` (stepwise when training on a CPU, else torch,
            i.e. cuDNN on GPU). Same parameters and results either way.

    Raises:
        ConfigError: unknown ``rnn_type``, ``bidirectional`` or ``lstm_impl``, or an odd ``hidden_size`` with
            ``"bottom"``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int = 256,
        num_layers: int = 1,
        rnn_type: str = "lstm",
        bidirectional: bool | str = True,
        dropout: float = 0.0,
        residual: bool = False,
        reverse_source: bool = False,
        lstm_impl: str = "auto",
    ) -> None:
        super().__init__()
        self.lstm_impl = check_impl(lstm_impl, "model.encoder.lstm_impl")
        if bidirectional not in BIDIRECTIONAL_CHOICES:
            raise ConfigError(f"encoder bidirectional={bidirectional!r}; valid choices: true, false, bottom")
        if bidirectional == "bottom" and hidden_size % 2:
            raise ConfigError(f"encoder bidirectional=bottom splits hidden_size={hidden_size} over two directions; fix: make it even")
        self.rnn_type = rnn_type
        self.num_layers = num_layers
        self.residual = residual
        self.reverse_source = reverse_source
        self.dropout = nn.Dropout(dropout)
        layers, size = [], input_size
        for layer in range(num_layers):
            both_ways = bidirectional is True or (bidirectional == "bottom" and layer == 0)
            units = hidden_size // 2 if bidirectional == "bottom" else hidden_size
            units = units if both_ways else hidden_size
            layers.append(rnn_class(rnn_type)(size, units, batch_first=True, bidirectional=both_ways))
            size = units * (2 if both_ways else 1)
        self.layers = nn.ModuleList(layers)
        self.output_size = size

    def forward(self, embedded: Tensor, src_lengths: Tensor) -> tuple[Tensor, RNNState]:
        """Encode ``embedded`` ``(B, S, E)`` with true lengths ``src_lengths`` ``(B,)``.

        Returns:
            outputs: ``(B, S, K)``, zero on padding, in source order.
            final: the last state of each layer, directions concatenated: ``(L, B, K)`` (a pair for LSTM).
        """
        if self.reverse_source:
            embedded = reverse_padded(embedded, src_lengths)
        packed = pack(embedded, src_lengths)
        finals = []
        for index, layer in enumerate(self.layers):
            layer_input = packed if index == 0 else packed._replace(data=self.dropout(packed.data))
            stepwise = use_stepwise(self.lstm_impl, layer, embedded.device)
            output, final = packed_lstm(layer, layer_input) if stepwise else layer(layer_input)
            if self.residual and index > 0 and output.data.shape == packed.data.shape:
                output = output._replace(data=output.data + packed.data)
            finals.append(map_state(_concat_directions, final))
            packed = output
        outputs = unpack(packed, total_length=embedded.size(1))
        if self.reverse_source:
            outputs = reverse_padded(outputs, src_lengths)
        if isinstance(finals[0], tuple):
            return outputs, (torch.stack([h for h, _ in finals]), torch.stack([c for _, c in finals]))
        return outputs, torch.stack(finals)


def _concat_directions(state: Tensor) -> Tensor:
    # (D, B, H) -> (B, D*H)
    return state.transpose(0, 1).reshape(state.size(1), -1)


