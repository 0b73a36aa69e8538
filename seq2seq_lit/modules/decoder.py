"""Attention decoders, one class per flow; any :class:`Attention` works with either.

Shapes: B batch, S source length, T target steps, E target embedding size, K key size (encoder outputs), C context
size (the attention's ``context_size``: K, or 0 without attention), H decoder hidden size, L decoder layers.

Flows:
    :class:`LuongDecoder` (Luong et al. 2015, Sec. 3): ``h_t = RNN(x_t, h_{t-1})``, attend with the query ``h_t``,
    attentional hidden ``h~_t = tanh(W_c [c_t; h_t])`` (Eq. 5). With input feeding (Sec. 3.3) ``x_t = [y_{t-1};
    h~_{t-1}]``, otherwise ``x_t = y_{t-1}`` and the whole unroll is one RNN call plus one batched attention.

    :class:`BahdanauDecoder` (Bahdanau et al. 2015, App. A.2.2): attend with the query ``s_{t-1}``, then
    ``s_t = RNN([y_{t-1}; c_t], s_{t-1})`` and the output ``t_t = tanh(W_o [s_t; c_t; y_{t-1}])`` (a deep output layer
    with tanh in place of maxout), or the paper's maxout over ``[s_{t-1}; c_t; y_{t-1}]`` (``deep_output=maxout``).

Both return per step an output ``(B, H)`` for the generator and the attention weights ``(B, S)``. The teacher-forced
unroll (:meth:`RNNDecoder.forward`) equals stepping :meth:`RNNDecoder.step` over the same inputs. The state carries
the target step index (read by local-m attention) and, for an attention with coverage, the weights summed so far.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .attention import Attention, AttentionCache, build_attention
from .rnn_state import RNNState, map_state, rnn_class, single_step_kernels, top_layer
from .stepwise_lstm import StepwiseDecoderLSTM, check_impl, use_stepwise

AttentionFactory = Callable[..., Attention]


class DecoderState(NamedTuple):
    """What a decoder carries from one step to the next.

    Attributes:
        hidden: the RNN state ``(L, B, H)`` (an ``(h, c)`` pair for LSTM).
        input_feed: the previous attentional hidden ``(B, H)`` for Luong input feeding, else None.
        coverage: the attention weights summed over the previous steps ``(B, S)`` float32, for an attention with
            coverage; None before the first step, and for an attention without coverage.
        step: the index of the next target step (0 before the first), the same for every row.
    """

    hidden: RNNState
    input_feed: Tensor | None = None
    coverage: Tensor | None = None
    step: int = 0

    def index_select(self, index: Tensor) -> "DecoderState":
        """Select (or repeat) batch rows ``index`` ``(B',)``, e.g. to expand sentences into beams or reorder them."""
        hidden = map_state(lambda h: h.index_select(1, index), self.hidden)
        feed, coverage = (None if t is None else t.index_select(0, index) for t in (self.input_feed, self.coverage))
        return DecoderState(hidden, feed, coverage, self.step)


class RNNDecoder(nn.Module):
    """Shared parts of the decoder flows: the RNN, the attention, dropout on the outputs, and the step loop.

    A flow (a subclass) builds its attention with :func:`~seq2seq_lit.modules.attention.build_attention`, works out
    the RNN's input size from it, passes both here, and implements :meth:`step`; that is the whole contract. Inside
    :meth:`step` it runs the RNN through :meth:`run_rnn`, which the teacher-forced unroll (:meth:`forward`) may serve
    from a stepwise LSTM that has every step's embedding projected already.

    Args:
        rnn_input_size: the RNN's input size per step, ``E`` plus what the flow appends to the embedding.
        attention: the built attention (query size H, key size K).
        hidden_size: H.
        num_layers: L.
        rnn_type: ``rnn``, ``gru`` or ``lstm``.
        dropout: between stacked layers and on each output (the generator's input).
        lstm_impl: how an LSTM runs the teacher-forced step loop: ``torch`` (``nn.LSTM`` called once per step),
            ``stepwise`` (:mod:`~seq2seq_lit.modules.stepwise_lstm`: the embeddings' projection for all steps at
            once, one product per step, the weight gradient of all steps in one product) or ``auto`` (stepwise when
            training on a CPU, else torch). Same parameters and results either way.

    Raises:
        ConfigError: for an unknown ``rnn_type`` or ``lstm_impl``.
    """

    def __init__(
        self,
        rnn_input_size: int,
        attention: Attention,
        hidden_size: int = 512,
        num_layers: int = 1,
        rnn_type: str = "lstm",
        dropout: float = 0.0,
        lstm_impl: str = "auto",
    ) -> None:
        super().__init__()
        self.lstm_impl = check_impl(lstm_impl, "model.decoder.lstm_impl")
        self.hidden_size = self.output_size = hidden_size
        self.num_layers = num_layers
        self.rnn_type = rnn_type
        self.rnn = rnn_class(rnn_type)(
            rnn_input_size, hidden_size, num_layers=num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0
        )
        self.attention = attention  # registered after the RNN: the parameter order (and so init_range's draws)
        self.dropout = nn.Dropout(dropout)
        self._runner: StepwiseDecoderLSTM | None = None  # set during a stepwise unroll (forward)

    def init_state(self, hidden: RNNState) -> DecoderState:
        """The state before the first step, from the bridge's output ``(L, B, H)``."""
        return DecoderState(hidden)

    def step(self, embedded: Tensor, state: DecoderState, cache: AttentionCache) -> tuple[Tensor, DecoderState, Tensor]:
        """One step from the previous target embedding ``(B, E)``.

        Returns:
            output: ``(B, H)``, the generator's input.
            state: the new :class:`DecoderState`.
            weights: the attention weights ``(B, S)``.
        """
        raise NotImplementedError

    def run_rnn(self, embedded: Tensor, extra: Tensor | None, hidden: RNNState) -> tuple[Tensor, RNNState]:
        """The RNN over one step's input ``[embedded; extra]`` (``(B, E)``, ``(B, F)`` or None) from ``hidden``;
        returns the top layer's output ``(B, H)`` and the new state.

        Raises:
            RuntimeError: during a stepwise unroll, when ``embedded`` or ``hidden`` is not what the unroll passed to
                this step (the stepwise LSTM projected the unroll's embeddings in advance and carries its own state).
        """
        if self._runner is not None:
            return self._runner.step(embedded, extra, hidden)
        rnn_input = embedded if extra is None else torch.cat([embedded, extra], dim=-1)
        output, hidden = self.rnn(rnn_input.unsqueeze(1), hidden)
        return output.squeeze(1), hidden

    def attend(self, query: Tensor, state: DecoderState, cache: AttentionCache) -> tuple[Tensor, Tensor]:
        """Attend with ``query`` ``(B, T, H)``, whose first row is target step ``state.step``.

        Returns the context ``(B, T, C)`` and the weights ``(B, T, S)``.
        """
        return self.attention(query, cache, step=state.step, coverage=state.coverage)

    def next_state(
        self, state: DecoderState, hidden: RNNState, weights: Tensor, input_feed: Tensor | None = None
    ) -> DecoderState:
        """The state after one step that produced ``hidden`` and the weights ``(B, S)``."""
        coverage = None
        if self.attention.coverage:
            coverage = weights if state.coverage is None else state.coverage + weights
        return DecoderState(hidden, input_feed, coverage, state.step + 1)

    def forward(self, embedded: Tensor, state: DecoderState, cache: AttentionCache) -> tuple[Tensor, Tensor]:
        """Teacher-forced unroll over ``embedded`` ``(B, T, E)``; returns outputs ``(B, T, H)`` and weights ``(B, T, S)``."""
        outputs, weights = [], []
        steps = embedded.unbind(1)  # unbind: one gradient copy for all steps, not one per step
        if use_stepwise(self.lstm_impl, self.rnn, embedded.device):
            self._runner = StepwiseDecoderLSTM(self.rnn, embedded, state.hidden, self.training)
        try:
            with single_step_kernels():
                for step_embedded in steps:
                    output, state, step_weights = self.step(step_embedded, state, cache)
                    outputs.append(output)
                    weights.append(step_weights)
        finally:
            self._runner = None
        return torch.stack(outputs, dim=1), torch.stack(weights, dim=1)

    @property
    def needs_step_loop(self) -> bool:
        """Whether each step depends on the previous step's output, so that the unroll must loop in Python."""
        return True


class LuongDecoder(RNNDecoder):
    """Luong et al. 2015 flow: the query is the new RNN state ``h_t``; ``h~_t = tanh(W_c [c_t; h_t])`` (Eq. 5).

    Without attention (context size 0) this is ``h~_t = tanh(W_c h_t)``.

    Args:
        embedding_size: E.
        key_size: K, the size of the encoder outputs the attention reads.
        attention: a factory ``attention(query_size=H, key_size=K)``, e.g. a Hydra ``_partial_`` config.
        hidden_size: H.
        input_feeding: feed ``h~_{t-1}`` into the RNN with ``y_{t-1}`` (Sec. 3.3). Without it, and unless the
            attention needs a step loop (coverage), the teacher-forced unroll is one RNN call over all T steps and
            one batched attention.
        kwargs: ``num_layers``, ``rnn_type``, ``dropout``, ``lstm_impl`` of :class:`RNNDecoder`.

    Raises:
        ConfigError: as :class:`RNNDecoder`, for an option the attention does not take, or as its constructor raises.
    """

    def __init__(
        self,
        embedding_size: int,
        key_size: int,
        attention: AttentionFactory,
        hidden_size: int = 512,
        input_feeding: bool = True,
        **kwargs,
    ) -> None:
        built = build_attention(attention, query_size=hidden_size, key_size=key_size)
        rnn_input_size = embedding_size + (hidden_size if input_feeding else 0)  # [y_{t-1}; h~_{t-1}]
        super().__init__(rnn_input_size, built, hidden_size, **kwargs)
        self.input_feeding = input_feeding
        self.combine = nn.Linear(built.context_size + hidden_size, hidden_size, bias=False)  # W_c

    @property
    def needs_step_loop(self) -> bool:
        return self.input_feeding or self.attention.needs_step_loop

    def init_state(self, hidden: RNNState) -> DecoderState:
        if not self.input_feeding:
            return DecoderState(hidden)
        batch = top_layer(hidden).size(0)
        return DecoderState(hidden, top_layer(hidden).new_zeros(batch, self.hidden_size))

    def step(self, embedded: Tensor, state: DecoderState, cache: AttentionCache) -> tuple[Tensor, DecoderState, Tensor]:
        rnn_output, hidden = self.run_rnn(embedded, state.input_feed, state.hidden)  # (B, H)
        output, weights = self._attentional(rnn_output.unsqueeze(1), state, cache)
        output, weights = output.squeeze(1), weights.squeeze(1)
        return output, self.next_state(state, hidden, weights, output if self.input_feeding else None), weights

    def forward(self, embedded: Tensor, state: DecoderState, cache: AttentionCache) -> tuple[Tensor, Tensor]:
        if self.needs_step_loop:
            return super().forward(embedded, state, cache)
        rnn_outputs, _ = self.rnn(embedded, state.hidden)  # (B, T, H): one call over all steps
        return self._attentional(rnn_outputs, state, cache)

    def _attentional(self, query: Tensor, state: DecoderState, cache: AttentionCache) -> tuple[Tensor, Tensor]:
        # query h_t: (B, T, H) -> attentional hidden h~_t (B, T, H), weights (B, T, S)
        context, weights = self.attend(query, state, cache)
        attentional = torch.tanh(self.combine(torch.cat([context, query], dim=-1)))
        return self.dropout(attentional), weights


DEEP_OUTPUTS = ("tanh", "maxout")


class BahdanauDecoder(RNNDecoder):
    """Bahdanau et al. 2015 flow: attend with ``s_{t-1}``, feed ``[y_{t-1}; c_t]`` to the RNN, deep output.

    Deep output (the generator's input ``t_t``):
        ``tanh`` (default): ``t_t = tanh(W_o [s_t; c_t; y_{t-1}])``, from the new state ``s_t``.
        ``maxout``: the paper's (App. A.2.2, Eq. for ``t~_i``): ``t~_t = U_o s_{t-1} + V_o y_{t-1} + C_o c_t`` of
            size ``2 M``, and ``t_t = max(t~_{t,2j-1}, t~_{t,2j})`` (maxout with pools of 2, Goodfellow et al. 2013),
            from the previous state ``s_{t-1}``, the query of the attention.

    Without attention (context size 0) the RNN reads ``y_{t-1}`` alone and the deep output drops ``c_t``.

    Args:
        deep_output: ``tanh`` or ``maxout``.
        maxout_size: M, the output size with ``maxout`` (the paper: 500 with 1000 hidden units); None: H.
        Others as :class:`LuongDecoder`, without ``input_feeding``.

    Raises:
        ConfigError: an unknown ``deep_output``, or as :class:`LuongDecoder`.
    """

    def __init__(
        self,
        embedding_size: int,
        key_size: int,
        attention: AttentionFactory,
        hidden_size: int = 512,
        deep_output: str = "tanh",
        maxout_size: int | None = None,
        **kwargs,
    ) -> None:
        if deep_output not in DEEP_OUTPUTS:
            raise ConfigError(f"model.decoder.deep_output={deep_output!r}; valid choices: {', '.join(DEEP_OUTPUTS)}")
        built = build_attention(attention, query_size=hidden_size, key_size=key_size)
        super().__init__(embedding_size + built.context_size, built, hidden_size, **kwargs)  # [y_{t-1}; c_t]
        self.maxout = deep_output == "maxout"
        if self.maxout:
            self.output_size = maxout_size or hidden_size
        inputs, outputs = hidden_size + built.context_size + embedding_size, self.output_size * (2 if self.maxout else 1)
        self.deep_output = nn.Linear(inputs, outputs)  # W_o, or [U_o V_o C_o] for maxout

    def step(self, embedded: Tensor, state: DecoderState, cache: AttentionCache) -> tuple[Tensor, DecoderState, Tensor]:
        previous = top_layer(state.hidden)  # s_{t-1}: (B, H)
        context, weights = self.attend(previous.unsqueeze(1), state, cache)  # (B, 1, C), (B, 1, S)
        context, weights = context.squeeze(1), weights.squeeze(1)
        rnn_output, hidden = self.run_rnn(embedded, context if context.size(-1) else None, state.hidden)
        if self.maxout:
            pre = self.deep_output(torch.cat([previous, context, embedded], dim=-1))  # t~_t: (B, 2 M)
            output = pre.unflatten(-1, (self.output_size, 2)).amax(-1)
        else:
            output = torch.tanh(self.deep_output(torch.cat([rnn_output, context, embedded], dim=-1)))
        return self.dropout(output), self.next_state(state, hidden, weights), weights
