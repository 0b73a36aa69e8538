"""An LSTM stepped in Python, built for CPU training: a hand-written backward per step, and the weight gradient of
all steps in one matrix product at the end.

Shapes: D directions (1, or 2 for a bidirectional layer), B batch, T steps, E input size whose projection is known
before the loop (embeddings), F input size only known during the loop (input feeding, context), H hidden size,
G = 4H gates in PyTorch's order (input, forget, cell, output), N all steps' rows together.

Why. Where each step's input depends on the previous step's output (Luong input feeding, Bahdanau's context) the
decoder cannot hand the whole sequence to one fused kernel, and PyTorch's LSTM called one step at a time pays, per
step, two weight-gradient products whose inner dimension is only B and the accumulation of each into ``(G, E + F)``
and ``(G, H)`` gradients. Here:

- the projection of the known inputs (``W_ih`` applied to the embeddings, plus both biases) is one product over all
  T steps before the loop;
- a step is one product ``[x_t; h_{t-1}] W^T`` of the step-dependent inputs and the previous hidden state with the
  concatenated weights, then the gates (Hochreiter & Schmidhuber 1997; Gers et al. 2000 forget gate, PyTorch's
  formulation without peepholes), in one autograd node whose backward is written out;
- each step's backward records its gate gradients on a tape instead of forming a weight gradient; a node placed on
  the initial cell state, whose backward autograd can only run after every step's (each step's backward needs the
  next step's cell-state gradient), forms ``dW = sum_t dgates_t^T [x_t; h_{t-1}]`` as one product over N rows.

Packed sequences (the encoder) step a batch sorted by length that shrinks as sentences end, both directions in one
batched product, so padding is never computed, as in PyTorch's packed LSTM.

The parameters stay those of the ``nn.LSTM`` module (same names in checkpoints); results equal ``nn.LSTM``'s up to
float rounding (tests/test_stepwise_lstm.py). On CUDA, cuDNN's fused kernels are the better choice, which is what
``impl="auto"`` picks.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from ..errors import ConfigError

IMPLS = ("auto", "torch", "stepwise")


def check_impl(impl: str, key: str = "lstm_impl") -> str:
    """Validate an ``lstm_impl`` setting; ``key`` names it in the error (e.g. ``model.encoder.lstm_impl``).

    Raises:
        ConfigError: for a value other than ``auto``, ``torch`` or ``stepwise``.
    """
    if impl not in IMPLS:
        raise ConfigError(f"{key}={impl!r}; valid choices: {', '.join(IMPLS)}")
    return impl


def use_stepwise(impl: str, rnn: nn.Module, device: torch.device) -> bool:
    """Whether ``rnn`` should run stepwise: an LSTM, and ``impl`` is ``stepwise``, or ``auto`` on a CPU while
    gradients are recorded. Without gradients (validation, decoding) ``auto`` runs PyTorch's LSTM, whose fused oneDNN
    kernel encodes a batch faster (figures in docs/extending.md)."""
    if not isinstance(rnn, nn.LSTM) or impl == "torch":
        return False
    return impl == "stepwise" or (device.type == "cpu" and torch.is_grad_enabled())


class _Tape:
    """The recurrent inputs ``(D, B_t, F + H)`` each step read, and the gate gradients ``(D, B_t, G)`` its backward
    produced, by step."""

    def __init__(self) -> None:
        self.inputs: list[Tensor] = []
        self.grads: dict[int, Tensor] = {}

    def weight_grad(self) -> Tensor:
        """``sum_t dgates_t^T x_t``: ``(D, G, F + H)``, one batched product over the steps that got a gradient."""
        steps = sorted(self.grads)
        grads = torch.cat([self.grads[t] for t in steps], dim=1)  # (D, N, G)
        inputs = torch.cat([self.inputs[t] for t in steps], dim=1)  # (D, N, F + H)
        self.grads = {}
        return torch.bmm(grads.transpose(1, 2), inputs)


def lstm_cell(gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The LSTM cell from the gate pre-activations ``(..., G)`` and the cell state ``c`` ``(..., H)``: ``c' = f * c +
    i * g``, ``h' = o * tanh(c')`` (``gates`` is overwritten).

    Returns ``h'``, ``c'``, the gate activations ``(..., G)`` (sigmoid, tanh for the cell gate) and ``tanh(c')``.
    """
    size = c.size(-1)
    cell = torch.tanh(gates[..., 2 * size : 3 * size])
    act = gates.sigmoid_()
    act[..., 2 * size : 3 * size] = cell
    i, f, g, o = act.chunk(4, dim=-1)
    c_new = torch.addcmul(f * c, i, g)
    tanh_c = torch.tanh(c_new)
    return o * tanh_c, c_new, act, tanh_c


class _LSTMStep(torch.autograd.Function):
    """One step: ``gates = pre + x W^T``; ``c' = f * c + i * g``; ``h' = o * tanh(c')``, computed in float32.

    Inputs ``pre`` ``(D, B, G)``, ``x`` ``(D, B, F + H)``, ``c`` ``(D, B, H)``, ``weight`` ``(D, G, F + H)``; outputs
    ``h'`` and ``c'`` ``(D, B, H)``. The weight's gradient goes to ``tape`` (see :class:`_WeightGrad`).
    """

    @staticmethod
    def forward(ctx, pre: Tensor, x: Tensor, c: Tensor, weight: Tensor, tape: _Tape | None, step: int):
        with torch.autocast(pre.device.type, enabled=False):
            pre, x, c, weight = pre.float(), x.float(), c.float(), weight.float()
            h_new, c_new, act, tanh_c = lstm_cell(torch.baddbmm(pre, x, weight.transpose(1, 2)), c)
        if tape is not None:
            tape.inputs.append(x.detach())  # detached: a tape that held the graph would keep it alive in a cycle
        ctx.save_for_backward(act, c, tanh_c, weight)
        ctx.tape, ctx.step = tape, step
        return h_new, c_new

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_h: Tensor, grad_c: Tensor):
        act, c, tanh_c, weight = ctx.saved_tensors
        i, f, g, o = act.chunk(4, dim=-1)
        grad_h, grad_c = grad_h.float(), grad_c.float()
        grad_c = torch.addcmul(grad_c, grad_h * o, 1 - tanh_c * tanh_c)  # the whole dL/dc'
        grad_gates = torch.cat(
            [grad_c * g * i * (1 - i), grad_c * c * f * (1 - f), grad_c * i * (1 - g * g), grad_h * tanh_c * o * (1 - o)],
            dim=-1,
        )
        if ctx.tape is not None:
            ctx.tape.grads[ctx.step] = grad_gates
        grad_x = torch.bmm(grad_gates, weight) if ctx.needs_input_grad[1] else None
        return grad_gates, grad_x, grad_c * f, None, None, None


class _WeightGrad(torch.autograd.Function):
    """Identity on the initial cell state ``(D, B, H)``; its backward turns the tape into the weight's gradient.

    Step 0 is the only reader of its output, and step t's backward needs the cell-state gradient from step t + 1's,
    so autograd runs this backward after every step's: the tape is complete by then.
    """

    @staticmethod
    def forward(ctx, c0: Tensor, weight: Tensor, tape: _Tape):
        ctx.tape = tape
        return c0.view_as(c0)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_c0: Tensor):
        return grad_c0, ctx.tape.weight_grad(), None


class LSTMSteps:
    """One unroll of one LSTM layer (D directions) stepped by hand; create one per forward pass.

    Args:
        weight: ``(D, G, F + H)``, the step-dependent part of ``W_ih`` (``F`` columns) next to ``W_hh``.
        c0: the initial cell state ``(D, B, H)``.
    """

    def __init__(self, weight: Tensor, c0: Tensor) -> None:
        self.weight = weight
        self.tape = _Tape() if torch.is_grad_enabled() and weight.requires_grad else None
        self.c0 = _WeightGrad.apply(c0, weight, self.tape) if self.tape is not None else c0
        self.steps = 0

    def step(self, pre: Tensor, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Advance one step from the pre-computed gates ``(D, B, G)``, the recurrent input ``[x_t; h_{t-1}]``
        ``(D, B, F + H)`` and the cell state ``c`` ``(D, B, H)`` (None at the first step: ``c0``).

        Returns ``h_t`` and ``c_t``, ``(D, B, H)``.
        """
        if c is None:
            c = self.c0[:, : x.size(1)]
        h, c = _LSTMStep.apply(pre, x, c, self.weight, self.tape, self.steps)
        self.steps += 1
        return h, c


def layer_weights(rnn: nn.LSTM, layer: int, suffix: str = "") -> tuple[Tensor, Tensor, Tensor]:
    """``W_ih`` ``(G, E + F)``, ``W_hh`` ``(G, H)`` and ``b_ih + b_hh`` ``(G,)`` (zeros without bias) of one layer and direction."""
    w_ih, w_hh = getattr(rnn, f"weight_ih_l{layer}{suffix}"), getattr(rnn, f"weight_hh_l{layer}{suffix}")
    if rnn.bias:
        bias = getattr(rnn, f"bias_ih_l{layer}{suffix}") + getattr(rnn, f"bias_hh_l{layer}{suffix}")
    else:
        bias = w_ih.new_zeros(w_ih.size(0))
    return w_ih, w_hh, bias


class StepwiseDecoderLSTM:
    """A (stacked, unidirectional) ``nn.LSTM`` unrolled one step at a time over a known input sequence ``(B, T, E)``
    and, per step, inputs only known then ``(B, F)`` (input feeding, context), appended to the known ones as the
    RNN's input ``[known; extra]``.

    Between layers, dropout as ``nn.LSTM``'s (``rnn.dropout``, in training mode).

    Args:
        rnn: the ``nn.LSTM`` (``batch_first`` or not; ``proj_size`` 0) whose parameters are used.
        known: ``(B, T, E)``.
        hidden: the initial ``(h, c)``, each ``(L, B, H)``.
        training: whether dropout between layers is active.

    Each :meth:`step` is given the step's known input and the state, and checks them: the known inputs were projected
    here in advance, so a step can only take them in order, once each, and the first step the initial state.

    Raises:
        ConfigError: for an LSTM with projections (``proj_size``) or bidirectional, which a decoder never builds.
    """

    def __init__(self, rnn: nn.LSTM, known: Tensor, hidden: tuple[Tensor, Tensor], training: bool) -> None:
        if rnn.bidirectional or rnn.proj_size:
            raise ConfigError("the stepwise LSTM decoder needs a unidirectional LSTM without proj_size; fix: lstm_impl=torch")
        self.known, self.initial = known, hidden
        self.dropout = rnn.dropout if training else 0.0
        known_size = known.size(-1)
        self.layers: list[LSTMSteps] = []
        self.pre: list[Sequence[Tensor]] = []  # per layer: the pre-computed gates of each step (or one for all)
        c0 = hidden[1]
        for layer in range(rnn.num_layers):
            w_ih, w_hh, bias = layer_weights(rnn, layer)
            if layer == 0:  # the known inputs' projection, all steps in one product
                pre = F.linear(known, w_ih[:, :known_size], bias).unbind(1)  # T x (B, G)
                w_step = w_ih[:, known_size:]
            else:
                pre = [bias.expand(known.size(0), -1)]
                w_step = w_ih
            weight = torch.cat([w_step, w_hh], dim=1).unsqueeze(0)  # (1, G, F + H)
            self.layers.append(LSTMSteps(weight, c0[layer].unsqueeze(0)))
            self.pre.append(pre)
        self.steps = 0

    def step(
        self, known: Tensor, extra: Tensor | None, hidden: tuple[Tensor, Tensor]
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """The next step, from its known input ``known`` ``(B, E)`` (``known[:, t]`` of the constructor's, the same
        view), the step-dependent input ``extra`` ``(B, F)`` (None if F = 0) and the state ``hidden`` (``(L, B, H)``
        each; at the first step, the constructor's).

        Returns the top layer's output ``(B, H)`` and the new state.

        Raises:
            RuntimeError: past the last known step, for a known input other than this step's, or at the first step
                for a state other than the initial one.
        """
        self._check(known, hidden)
        h_prev, c_prev = hidden
        below = extra
        hs, cs = [], []
        for layer, steps in enumerate(self.layers):
            pre = self.pre[layer]
            pre_t = pre[self.steps] if layer == 0 else pre[0]
            if layer > 0 and self.dropout:
                below = F.dropout(below, self.dropout, training=True)
            x = h_prev[layer] if below is None else torch.cat([below, h_prev[layer]], dim=-1)
            h, c = steps.step(pre_t.unsqueeze(0), x.unsqueeze(0), None if self.steps == 0 else c_prev[layer].unsqueeze(0))
            hs.append(h)
            cs.append(c)
            below = h[0]
        self.steps += 1
        return below, (torch.cat(hs), torch.cat(cs))


    def _check(self, known: Tensor, hidden: tuple[Tensor, Tensor]) -> None:
        t, steps = self.steps, self.known.size(1)
        where = "the stepwise LSTM of the decoder's teacher-forced unroll"
        if t >= steps:
            raise RuntimeError(f"{where} was asked for step {t + 1} of a {steps}-step unroll: run the RNN once per step")
        expected = self.known.select(1, t)
        if known.shape != expected.shape or known.data_ptr() != expected.data_ptr():
            raise RuntimeError(
                f"{where} was given at step {t} another input than that step's embedding (it projected the embeddings "
                f"in advance): pass step()'s embedded unchanged, and run the RNN once per step"
            )
        if t == 0 and hidden is not self.initial:
            raise RuntimeError(f"{where} was given at step 0 another state than the initial one: pass state.hidden unchanged")


def packed_lstm(rnn: nn.LSTM, packed: PackedSequence) -> tuple[PackedSequence, tuple[Tensor, Tensor]]:
    """``rnn(packed)`` for a one-layer (bidirectional or not) ``nn.LSTM``, stepped by hand.

    Returns, as ``nn.LSTM``: the packed outputs (data ``(N, D*H)``) and the final ``(h, c)``, each ``(D, B, H)`` in the
    batch's original order.

    Raises:
        ConfigError: for more than one layer or ``proj_size`` (the encoder builds single-layer modules).
    """
    if rnn.num_layers != 1 or rnn.proj_size:
        raise ConfigError("the stepwise packed LSTM takes one layer without proj_size; fix: lstm_impl=torch")
    data, batch_sizes = packed.data, packed.batch_sizes
    sizes = batch_sizes.tolist()
    directions = 2 if rnn.bidirectional else 1
    reverse = _reversed_order(batch_sizes) if directions == 2 else None
    pre, weights = [], []
    for direction in range(directions):
        w_ih, w_hh, bias = layer_weights(rnn, 0, "_reverse" if direction else "")
        pre.append(F.linear(data if direction == 0 else data[reverse.to(data.device)], w_ih, bias))  # (N, G)
        weights.append(w_hh)
    pre_steps = torch.stack(pre).split(sizes, dim=1)  # T x (D, B_t, G)
    batch, size = sizes[0], rnn.hidden_size
    zeros = data.new_zeros(directions, batch, size)
    steps = LSTMSteps(torch.stack(weights), zeros)
    outputs, finals_h, finals_c = [], [], []
    h = c = None
    for t, pre_t in enumerate(pre_steps):
        active = sizes[t]
        h, c = steps.step(pre_t, zeros[:, :active] if h is None else h[:, :active], None if c is None else c[:, :active])
        outputs.append(h)
        ending = sizes[t + 1] if t + 1 < len(sizes) else 0
        if ending < active:  # sentences whose last token this was
            finals_h.append(h[:, ending:])
            finals_c.append(c[:, ending:])
    out = torch.cat(outputs, dim=1)  # (D, N, H) in each direction's own time order
    if directions == 2:
        out = torch.cat([out[0], out[1][reverse.to(out.device)]], dim=-1)  # (N, 2H)
    else:
        out = out[0]
    final_h, final_c = torch.cat(finals_h[::-1], dim=1), torch.cat(finals_c[::-1], dim=1)  # (D, B, H), sorted order
    if packed.unsorted_indices is not None:
        final_h, final_c = final_h[:, packed.unsorted_indices], final_c[:, packed.unsorted_indices]
    return PackedSequence(out, batch_sizes, packed.sorted_indices, packed.unsorted_indices), (final_h, final_c)


def _reversed_order(batch_sizes: Tensor) -> Tensor:
    """The permutation ``(N,)`` of packed rows that reverses every sequence within its length (an involution).

    Packed row ``(t, r)`` (step t, sorted sequence r of length L_r) is taken from row ``(L_r - 1 - t, r)``.
    """
    host = batch_sizes.device  # PackedSequence keeps batch_sizes on the host; the caller moves the result
    offsets = batch_sizes.cumsum(0) - batch_sizes  # (T,) first packed row of each step
    steps = torch.repeat_interleave(torch.arange(len(batch_sizes), device=host), batch_sizes)  # (N,) step of each row
    rows = torch.arange(int(batch_sizes.sum()), device=host) - offsets[steps]  # (N,) the sorted sequence of each row
    lengths = (batch_sizes.unsqueeze(1) > torch.arange(int(batch_sizes[0]), device=host)).sum(0)  # (B,) descending
    return offsets[lengths[rows] - 1 - steps] + rows
