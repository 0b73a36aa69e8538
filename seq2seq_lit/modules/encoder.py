"""Recurrent encoder over packed sequences.

Shapes: B batch, S source length, E embedding size, H hidden size per direction, D directions (1 or 2), L layers.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .rnn_state import RNNState, map_state, rnn_class


class RNNEncoder(nn.Module):
    """A stacked, optionally bidirectional RNN / GRU / LSTM that reads packed sequences, so padding never enters it.

    Args:
        input_size: E, the source embedding size.
        hidden_size: H, per direction; the outputs (keys) have size ``D * H``.
        num_layers: L.
        rnn_type: ``rnn``, ``gru`` or ``lstm``.
        bidirectional: read the source both ways (Bahdanau et al. 2015, Sec. 3.2) and concatenate.
        dropout: between stacked layers.

    Raises:
        ConfigError: for an unknown ``rnn_type``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int = 256,
        num_layers: int = 1,
        rnn_type: str = "lstm",
        bidirectional: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.rnn_type = rnn_type
        self.num_layers = num_layers
        self.num_directions = 2 if bidirectional else 1
        self.output_size = hidden_size * self.num_directions
        self.rnn = rnn_class(rnn_type)(
            input_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )

    def forward(self, embedded: Tensor, src_lengths: Tensor) -> tuple[Tensor, RNNState]:
        """Encode ``embedded`` ``(B, S, E)`` with true lengths ``src_lengths`` ``(B,)``.

        Returns:
            outputs: ``(B, S, D*H)``, zero on padding.
            final: the last state of each layer, directions concatenated: ``(L, B, D*H)`` (a pair for LSTM).
        """
        packed = pack_padded_sequence(embedded, src_lengths.cpu(), batch_first=True, enforce_sorted=False)
        outputs, final = self.rnn(packed)
        outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=embedded.size(1))
        return outputs, map_state(self._concat_directions, final)

    def _concat_directions(self, state: Tensor) -> Tensor:
        # (L*D, B, H) -> (L, D, B, H) -> (L, B, D*H)
        num_layers, batch, hidden = self.num_layers, state.size(1), state.size(2)
        state = state.view(num_layers, self.num_directions, batch, hidden)
        return state.transpose(1, 2).reshape(num_layers, batch, self.num_directions * hidden)
