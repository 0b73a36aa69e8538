"""The attention encoder-decoder: embeddings, encoder, bridge, decoder, generator.

Shapes: B batch, S source length, T target steps, E embedding size, H decoder hidden size, V target vocabulary.

References: Sutskever et al. 2014 (encoder-decoder), Bahdanau et al. 2015 and Luong et al. 2015 (attention).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .attention import AttentionCache
from .bridge import Bridge
from .decoder import DecoderState, RNNDecoder
from .encoder import RNNEncoder
from .rnn_state import single_step_kernels


class EncoderMemory(NamedTuple):
    """What decoding needs from the source: the prepared attention cache and the decoder's first state."""

    cache: AttentionCache
    state: DecoderState


class Seq2Seq(nn.Module):
    """Encoder-decoder with attention.

    Args:
        src_vocab_size: source vocabulary size.
        tgt_vocab_size: V.
        encoder: factory ``encoder(input_size=E)`` of an :class:`RNNEncoder` (a Hydra ``_partial_``).
        decoder: factory ``decoder(embedding_size=E, key_size=..., attention=...)`` of an :class:`RNNDecoder`.
        attention: factory ``attention(query_size=..., key_size=...)``, handed to the decoder.
        embedding_size: E, for both sides.
        dropout: on the embeddings.
        bridge: ``zeros``, ``last`` or ``learned`` (see :class:`Bridge`).
        pad_id: the padding id of both vocabularies.
        init_range: if set, every parameter starts uniform in ``[-init_range, init_range]`` (OpenNMT-py's
            ``param_init``; Sutskever et al. 2014 use 0.08); None keeps PyTorch's defaults.
        tie_embeddings: the output projection reuses the target embedding matrix (Press & Wolf 2017; Inan et al.
            2017); needs the decoder's output size to equal E.
        share_embeddings: one embedding matrix for source and target (a joint vocabulary, with
            ``data.tokenizer.per_side_vocab=false``); needs equal vocabulary sizes.

    Raises:
        ConfigError: for an unknown bridge or RNN type, sizes the bridge cannot connect, or a combination that leaves
            parameters untrained (no attention with ``bridge=zeros``, or with ``learned`` after a bidirectional encoder).
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        encoder: Callable[..., RNNEncoder],
        decoder: Callable[..., RNNDecoder],
        attention: Callable,
        embedding_size: int = 256,
        dropout: float = 0.2,
        bridge: str = "last",
        pad_id: int = 0,
        init_range: float | None = 0.1,
        tie_embeddings: bool = False,
        share_embeddings: bool = False,
    ) -> None:
        super().__init__()
        if share_embeddings and src_vocab_size != tgt_vocab_size:
            raise ConfigError(
                f"share_embeddings needs one vocabulary, but the source has {src_vocab_size} entries and the target "
                f"{tgt_vocab_size}; fix: data.tokenizer.joint=true data.tokenizer.per_side_vocab=false, or "
                f"model.share_embeddings=false"
            )
        self.pad_id = pad_id
        self.src_embed = nn.Embedding(src_vocab_size, embedding_size, padding_idx=pad_id)
        self.tgt_embed = self.src_embed if share_embeddings else nn.Embedding(tgt_vocab_size, embedding_size, padding_idx=pad_id)
        self.embed_dropout = nn.Dropout(dropout)
        self.encoder = encoder(input_size=embedding_size)
        self.decoder = decoder(embedding_size=embedding_size, key_size=self.encoder.output_size, attention=attention)
        if bridge == "zeros" and self.decoder.attention.context_size == 0:
            raise ConfigError(
                "model/attention=none with model.bridge=zeros leaves the decoder without any view of the source; "
                "fix: model.bridge=last or learned"
            )
        top_bidirectional = self.encoder.layers[-1].bidirectional
        if bridge == "learned" and top_bidirectional and self.decoder.attention.context_size == 0:
            raise ConfigError(
                "model.bridge=learned reads only the backward direction of the top encoder layer (Bahdanau et al. "
                "2015), so with model/attention=none its forward direction would never be trained; fix: "
                "model.encoder.bidirectional=false, or model.bridge=last"
            )
        self.bridge = Bridge(
            bridge,
            encoder_size=self.encoder.output_size,
            encoder_layers=self.encoder.num_layers,
            decoder_size=self.decoder.hidden_size,
            decoder_layers=self.decoder.num_layers,
            decoder_is_lstm=self.decoder.rnn_type == "lstm",
            encoder_directions=2 if top_bidirectional else 1,
            encoder_is_lstm=self.encoder.rnn_type == "lstm",
        )
        self.generator = nn.Linear(self.decoder.output_size, tgt_vocab_size)
        if tie_embeddings:
            if self.decoder.output_size != embedding_size:
                raise ConfigError(
                    f"tie_embeddings reuses the ({tgt_vocab_size} x {embedding_size}) target embeddings as the output "
                    f"projection, but the decoder outputs {self.decoder.output_size} values; fix: set "
                    f"model.decoder.hidden_size={embedding_size} or model.embedding_size={self.decoder.output_size}"
                )
            self.generator.weight = self.tgt_embed.weight
        if init_range is not None:
            for param in self.parameters():
                nn.init.uniform_(param, -init_range, init_range)
            with torch.no_grad():  # padding embeddings stay zero
                self.src_embed.weight[pad_id].zero_()
                self.tgt_embed.weight[pad_id].zero_()

    def encode(self, src: Tensor, src_lengths: Tensor) -> EncoderMemory:
        """Encode ``src`` ``(B, S)`` with lengths ``(B,)``; prepare the attention keys and the decoder's first state."""
        outputs, final = self.encoder(self.embed_dropout(self.src_embed(src)), src_lengths)
        cache = self.decoder.attention.prepare(outputs, src_pad_mask=src.eq(self.pad_id))
        return EncoderMemory(cache, self.decoder.init_state(self.bridge(final)))

    def decode_step(self, prev_tokens: Tensor, state: DecoderState, cache: AttentionCache) -> tuple[Tensor, DecoderState, Tensor]:
        """One inference step from the previous tokens ``(B,)``.

        Returns:
            log_probs: ``(B, V)``.
            state: the new decoder state.
            weights: attention weights ``(B, S)``.
        """
        with single_step_kernels():
            output, state, weights = self.decoder.step(self.embed_dropout(self.tgt_embed(prev_tokens)), state, cache)
        return torch.log_softmax(self.generator(output).float(), dim=-1), state, weights

    def forward(
        self,
        src: Tensor,
        src_lengths: Tensor,
        tgt_in: Tensor,
        teacher_forcing_ratio: float = 1.0,
        feed: str = "argmax",
        parallel: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """Training forward pass.

        Args:
            src: ``(B, S)``; src_lengths: ``(B,)``.
            tgt_in: ``(B, T)``, BOS followed by the reference.
            teacher_forcing_ratio: probability of feeding the reference token, drawn independently per sequence and
                per step (scheduled sampling, Bengio et al. 2015); otherwise the model's own prediction from the
                previous step is fed. At 1.0 the decoder unrolls in one call where its flow allows.
            feed: the prediction fed instead of the reference: ``argmax`` or ``sample`` (drawn from the softmax).
            parallel: take the predictions from a first, teacher-forced pass without gradient and unroll again on
                the mixed inputs (parallel scheduled sampling, Duckworth et al. 2019, two passes), keeping the
                one-call unroll; false feeds each step's prediction to the next step.

        Returns:
            logits ``(B, T, V)`` and attention weights ``(B, T, S)``.
        """
        cache, state = self.encode(src, src_lengths)
        if teacher_forcing_ratio >= 1.0:
            return self._unroll(tgt_in, state, cache)
        teacher = torch.rand(tgt_in.shape, device=tgt_in.device) < teacher_forcing_ratio  # (B, T), one coin per token
        teacher[:, 0] = True  # BOS
        if parallel:
            with torch.no_grad():
                first_logits, _ = self._unroll(tgt_in, state, cache)
            mixed = torch.where(teacher[:, 1:], tgt_in[:, 1:], self._predicted(first_logits[:, :-1], feed))
            return self._unroll(torch.cat([tgt_in[:, :1], mixed], dim=1), state, cache)
        return self._forward_sampled(tgt_in, state, cache, teacher, feed)

    def _unroll(self, tgt_in: Tensor, state: DecoderState, cache: AttentionCache) -> tuple[Tensor, Tensor]:
        outputs, weights = self.decoder(self.embed_dropout(self.tgt_embed(tgt_in)), state, cache)
        return self.generator(outputs), weights

    @staticmethod
    def _predicted(logits: Tensor, feed: str) -> Tensor:
        """The tokens ``(...)`` the model feeds itself from ``logits`` ``(..., V)``: argmax or a sample."""
        logits = logits.detach()
        if feed == "argmax":
            return logits.argmax(-1)
        if feed == "sample":
            probs = torch.softmax(logits.float(), dim=-1)
            return torch.multinomial(probs.reshape(-1, probs.size(-1)), 1).view(probs.shape[:-1])
        raise ConfigError(f"teacher-forcing feed={feed!r}: choose argmax or sample")

    def _forward_sampled(
        self, tgt_in: Tensor, state: DecoderState, cache: AttentionCache, teacher: Tensor, feed: str
    ) -> tuple[Tensor, Tensor]:
        # Step t feeds the reference where teacher[:, t], else the prediction of step t - 1.
        logits, weights = [], []
        prev = tgt_in[:, 0]
        with single_step_kernels():
            for t in range(tgt_in.size(1)):
                if t > 0:
                    prev = torch.where(teacher[:, t], tgt_in[:, t], self._predicted(logits[-1], feed))
                output, state, step_weights = self.decoder.step(self.embed_dropout(self.tgt_embed(prev)), state, cache)
                logits.append(self.generator(output))
                weights.append(step_weights)
        return torch.stack(logits, dim=1), torch.stack(weights, dim=1)
