"""Bridge from the encoder's final state to the decoder's initial state.

Shapes: B batch, L_e / L_d encoder / decoder layers, K encoder final-state size (directions concatenated), H decoder
hidden size.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .rnn_state import RNNState

BRIDGES = ("zeros", "last", "learned")


class Bridge(nn.Module):
    """Initialize the decoder from the encoder.

    Modes:
        ``zeros``: zero initial state (Luong et al. 2015 leave it to the attention).
        ``last``: the encoder's final state as it is (Sutskever et al. 2014; OpenNMT-py's default); needs
            ``K == H`` and ``L_e == L_d``.
        ``learned``: ``s_0 = tanh(W_s h<-_1 + b)`` for every decoder layer (Bahdanau et al. 2015, App. A.2.2), where
            ``h<-_1`` is the top encoder layer's backward state after reading the whole source (the first source
            position); for a unidirectional top layer its final (forward) state. For an LSTM encoder and decoder the
            cell state gets its own layer, ``c_0 = tanh(W_c c<-_1 + b_c)``.

    When the encoder is a GRU/RNN and the decoder an LSTM, the decoder's cell state starts at zero (and ``learned``
    builds no cell-state layer).

    Args:
        mode: ``zeros``, ``last`` or ``learned``.
        encoder_size: K, the encoder's final-state size, directions concatenated (forward first).
        encoder_layers, decoder_size, decoder_layers: L_e, H, L_d.
        decoder_is_lstm: whether the decoder wants an ``(h, c)`` pair.
        encoder_directions: directions of the encoder's top layer (1 or 2).
        encoder_is_lstm: whether the encoder gives an ``(h, c)`` pair.

    Raises:
        ConfigError: for an unknown mode or sizes that ``last`` cannot pass through.
    """

    def __init__(
        self,
        mode: str,
        encoder_size: int,
        encoder_layers: int,
        decoder_size: int,
        decoder_layers: int,
        decoder_is_lstm: bool,
        encoder_directions: int = 1,
        encoder_is_lstm: bool = True,
    ) -> None:
        super().__init__()
        if mode not in BRIDGES:
            raise ConfigError(f"unknown bridge {mode!r}; valid choices: {', '.join(BRIDGES)}")
        if mode == "last" and (encoder_size != decoder_size or encoder_layers != decoder_layers):
            raise ConfigError(
                f"bridge=last passes the encoder's final state through unchanged, but the encoder gives "
                f"{encoder_layers} layer(s) of size {encoder_size} and the decoder has {decoder_layers} of size "
                f"{decoder_size}; fix: make them equal or use model.bridge=learned (or zeros)"
            )
        self.mode = mode
        self.decoder_size = decoder_size
        self.decoder_layers = decoder_layers
        self.decoder_is_lstm = decoder_is_lstm
        self.source_size = encoder_size // encoder_directions  # the last direction of the top layer
        if mode == "learned":
            num_parts = 2 if decoder_is_lstm and encoder_is_lstm else 1
            self.layers = nn.ModuleList(nn.Linear(self.source_size, decoder_size) for _ in range(num_parts))

    def forward(self, final: RNNState) -> RNNState:
        """Map the encoder's final state ``(L_e, B, K)`` (a pair for LSTM) to the decoder's ``(L_d, B, H)``."""
        parts = list(final) if isinstance(final, tuple) else [final]
        h = parts[0]
        if self.mode == "zeros":
            init = [h.new_zeros(self.decoder_layers, h.size(1), self.decoder_size)]
        elif self.mode == "last":
            init = parts
        else:  # the backward direction is the second half of the concatenated top layer
            tops = [torch.tanh(layer(part[-1, :, -self.source_size :])) for layer, part in zip(self.layers, parts)]
            init = [top.unsqueeze(0).expand(self.decoder_layers, -1, -1).contiguous() for top in tops]
        if not self.decoder_is_lstm:
            return init[0]
        if len(init) == 1:  # GRU/RNN encoder or zeros: the cell state starts at zero
            init.append(torch.zeros_like(init[0]))
        return init[0], init[1]
