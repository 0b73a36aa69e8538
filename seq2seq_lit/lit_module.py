"""The training system: a LightningModule around :class:`~seq2seq_lit.modules.Seq2Seq`.

Shapes: B batch, S source length, T target steps, V target vocabulary.

It trains with token-level cross-entropy (optional label smoothing, Szegedy et al. 2016) under teacher forcing, or
scheduled sampling when the teacher-forcing schedule (:mod:`~seq2seq_lit.teacher_forcing`) lowers the ratio, and
validates and tests by decoding the whole split with the configured search (greedy or beam), scored with sacreBLEU
and chrF on detokenized output against the raw references (Post 2018). The sentencepiece models travel inside every checkpoint, so a checkpoint alone
is enough to translate.
"""

from __future__ import annotations

import logging
from typing import Any

import hydra
import lightning as L
import torch
import torch.distributed as dist
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torchmetrics import MaxMetric, MeanMetric

from .alignment.guided import GuidedAlignment, check_guided_alignment
from .data import Batch, Tokenizers
from .errors import ConfigError
from .metrics import LENGTH_EDGES, bleu_by_source_length, corpus_metrics
from .metrics import length_buckets as metrics_length_buckets
from .modules import Seq2Seq
from .schedules import AFTER_VALIDATION, lightning_schedulers
from .search import GreedySearch, Hypotheses
from .teacher_forcing import Constant
from .utils.compile import check_compile_mode, compile_step
from .utils.nonfinite import NonFiniteWatch

log = logging.getLogger(__name__)

TOKENIZERS_KEY = "seq2seq_lit_tokenizers"


def token_nll(
    net: Seq2Seq,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    tgt_in: torch.Tensor,
    tgt_out: torch.Tensor,
    pad_id: int,
    label_smoothing: float,
    teacher_forcing_ratio: float,
    feed: str,
    parallel: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean cross-entropy per non-pad target token of ``net`` on ``(src (B, S), src_lengths (B,), tgt_in (B, T),
    tgt_out (B, T))``, that token count (a 0-d tensor on the batch's device), and the attention weights ``(B, T, S)``;
    the function ``model.compile`` compiles."""
    logits, weights = net(src, src_lengths, tgt_in, teacher_forcing_ratio, feed, parallel)  # (B, T, V)
    num_tokens = (tgt_out != pad_id).sum()
    loss = F.cross_entropy(
        logits.flatten(0, 1).float(), tgt_out.flatten(), ignore_index=pad_id, label_smoothing=label_smoothing,
        reduction="sum",
    )
    return loss / num_tokens, num_tokens, weights


def _plain(cfg: Any) -> Any:
    """A DictConfig as plain containers, so hyperparameters pickle as builtins and checkpoints load weights-only."""
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


class Seq2SeqLitModule(L.LightningModule):
    """Attention encoder-decoder training system.

    Args:
        src_vocab_size, tgt_vocab_size: set from the data module's tokenizers.
        encoder, attention, decoder: Hydra ``_partial_`` configs of the network parts (``model/encoder``,
            ``model/attention``, ``model/decoder``); see :class:`~seq2seq_lit.modules.Seq2Seq`.
        optimizer: ``_partial_`` optimizer config, completed with the parameters.
        scheduler: optional ``_partial_`` LR scheduler config (``model/scheduler``), completed with the optimizer; see
            :mod:`~seq2seq_lit.schedules` (warmup, per-step schedules).
        scheduler_config: Lightning's scheduler settings (``monitor``, ``interval``, ``frequency``).
        embedding_size, dropout, bridge, init_range, tie_embeddings, share_embeddings: see
            :class:`~seq2seq_lit.modules.Seq2Seq`.
        label_smoothing: epsilon of the training loss (0 disables it); validation loss and perplexity use plain NLL.
        teacher_forcing: ``_target_`` config of a :mod:`~seq2seq_lit.teacher_forcing` schedule (``model/teacher_forcing``);
            the ratio follows ``global_step``, so a resumed run resumes the schedule. None: constant 1.0.
        search: ``_target_`` config of the search used for validation and test (``model/search``: greedy or beam).
        pad_id, bos_id, eos_id: special ids of the target vocabulary.
        nonfinite_loss: on a NaN or infinite training loss, ``stop`` the run (NonFiniteError naming the step) or
            ``skip`` the step's update with a warning.
        nonfinite_check_every: under ``stop`` on an accelerator, read the loss check every this many steps (and
            before each checkpoint) rather than every step, which would wait for the device each time; None: every
            step on the CPU, 100 elsewhere (:class:`~seq2seq_lit.utils.nonfinite.NonFiniteWatch`).

    Host syncs: a training step reads nothing back from the device (source lengths stay on the host,
    :meth:`~seq2seq_lit.data.Batch.to`; token counts and the loss check on the device), except with ``nonfinite_loss=skip`` (one read per step, to decide the update)
    and at Lightning's logging steps (``trainer.log_every_n_steps``; a progress bar reads the loss at each refresh).
        length_buckets: upper edges (source words) of the buckets the test stage scores BLEU by (see
            :func:`~seq2seq_lit.metrics.length_buckets`); logged as ``test/bleu_src_len_<label>``,
            ``test/sentences_src_len_<label>`` and ``test/length_ratio_src_len_<label>`` (hypothesis over reference
            length).
        guided_alignment: ``{"file": PATH, "weight": w, "format": "pharaoh"}``: add ``w`` times the guided-alignment
            loss (:mod:`~seq2seq_lit.alignment.guided`) of the attention against the word alignments of the training
            split in ``PATH``, logged as ``train/alignment_loss``; None or ``file: null`` trains without it.
        compile: ``torch.compile`` the training forward and loss in this mode (:mod:`~seq2seq_lit.utils.compile`:
            ``default``, ``reduce-overhead`` for CUDA graphs, ...); None: eager. Needs a constant teacher-forcing
            schedule (a changing ratio would compile anew every step); pair it with ``data.pad_to_multiple``.

    Raises:
        ConfigError: an unknown ``compile`` mode, or ``compile`` with a teacher-forcing schedule that changes.
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        encoder: dict,
        attention: dict,
        decoder: dict,
        optimizer: dict,
        scheduler: dict | None = None,
        scheduler_config: dict | None = None,
        embedding_size: int = 256,
        dropout: float = 0.2,
        bridge: str = "last",
        init_range: float | None = 0.1,
        tie_embeddings: bool = False,
        share_embeddings: bool = False,
        label_smoothing: float = 0.0,
        teacher_forcing: dict | None = None,
        search: dict | None = None,
        pad_id: int = 0,
        bos_id: int = 2,
        eos_id: int = 3,
        nonfinite_loss: str = "stop",
        nonfinite_check_every: int | None = None,
        length_buckets: list[int] | tuple[int, ...] = LENGTH_EDGES,
        guided_alignment: dict | None = None,
        compile: str | None = None,
    ) -> None:
        super().__init__()
        check_compile_mode(compile)
        self._nonfinite = NonFiniteWatch(nonfinite_loss, nonfinite_check_every)
        length_buckets, guided_alignment = list(_plain(length_buckets)), _plain(guided_alignment)
        metrics_length_buckets(length_buckets)  # a ConfigError now rather than at the end of training
        encoder, attention, decoder = _plain(encoder), _plain(attention), _plain(decoder)
        check_guided_alignment(guided_alignment, attention)
        optimizer, scheduler, scheduler_config, search, teacher_forcing = (
            _plain(optimizer),
            _plain(scheduler),
            _plain(scheduler_config),
            _plain(search),
            _plain(teacher_forcing),
        )
        self.save_hyperparameters()
        self.net = Seq2Seq(
            src_vocab_size,
            tgt_vocab_size,
            encoder=hydra.utils.instantiate(encoder),
            decoder=hydra.utils.instantiate(decoder),
            attention=hydra.utils.instantiate(attention),
            embedding_size=embedding_size,
            dropout=dropout,
            bridge=bridge,
            pad_id=pad_id,
            init_range=init_range,
            tie_embeddings=tie_embeddings,
            share_embeddings=share_embeddings,
        )
        self.search = hydra.utils.instantiate(search) if search else GreedySearch()
        self.teacher_forcing = hydra.utils.instantiate(teacher_forcing) if teacher_forcing else Constant(1.0)
        if compile and not isinstance(self.teacher_forcing, Constant):
            raise ConfigError(
                f"model.compile={compile} with model/teacher_forcing={type(self.teacher_forcing).__name__}: the ratio "
                "changes every step, and a compiled step would compile anew for each; fix: model/teacher_forcing=constant "
                "or model.compile=null"
            )
        # Compiled on first use, for training only: validation and test decode with the search, uncompiled.
        self._train_nll = compile_step(token_nll, compile) if compile else token_nll
        self.tokenizers: Tokenizers | None = None
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.val_bleu_best = MaxMetric()
        self._outputs: dict[int, str] = {}  # corpus index -> hypothesis, for the running evaluation
        self._after_validation: dict[str, Any] | None = None  # the scheduler entry of interval=validation
        self.guide: GuidedAlignment | None = None  # set in setup("fit") when guided_alignment has a file

    # -- inference ---------------------------------------------------------------------------------------------------

    def forward(self, batch: Batch) -> Hypotheses:
        """Decode a batch with the configured search."""
        return self.search(self.net, batch.src, batch.src_lengths, self.hparams.bos_id, self.hparams.eos_id)

    def translate(self, batch: Batch) -> list[str]:
        """Detokenized translations of a batch, in batch order.

        Raises:
            RuntimeError: if no tokenizers are attached (neither set by training nor loaded from a checkpoint).
        """
        if self.tokenizers is None:
            raise RuntimeError("no tokenizers attached: set `module.tokenizers` or load a checkpoint that has them")
        return [self.tokenizers.tgt.decode(ids) for ids in self(batch).best().token_lists()]

    # -- training ----------------------------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        settings = self.hparams.get("guided_alignment") or {}
        if stage == "fit" and settings.get("file") and self.guide is None:
            datamodule = self.trainer.datamodule
            self.guide = GuidedAlignment.from_file(
                settings["file"], datamodule.sources("train"), datamodule.references("train"), datamodule.tokenizers,
                settings.get("format", "pharaoh"),
            )

    def _token_nll(
        self, batch: Batch, label_smoothing: float, teacher_forcing_ratio: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean cross-entropy per non-pad target token, that token count (a 0-d tensor on the batch's device), and the
        attention weights ``(B, T, S)``."""
        schedule = self.teacher_forcing
        nll = self._train_nll if self.training else token_nll
        return nll(
            self.net, batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, self.hparams.pad_id, label_smoothing,
            teacher_forcing_ratio, schedule.feed, schedule.parallel,
        )

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor | None:
        ratio = self.teacher_forcing(self.global_step)
        token_loss, _, weights = self._token_nll(batch, self.hparams.label_smoothing, ratio)
        loss = token_loss
        if self.guide is not None:
            alignment_loss = self.guide.loss(weights, batch)
            loss = token_loss + self.hparams.guided_alignment["weight"] * alignment_loss
        if not self._nonfinite.update_allowed(loss, self.global_step, self.current_epoch, batch_idx):
            return None  # Lightning skips the update
        self.log("train/loss", token_loss, prog_bar=True, batch_size=len(batch))  # the token loss alone, comparable across runs
        if self.guide is not None:
            self.log("train/alignment_loss", alignment_loss, batch_size=len(batch))
        self.log("train/teacher_forcing_ratio", ratio, batch_size=len(batch))
        return loss

    def on_train_end(self) -> None:
        self._nonfinite.check(self.global_step)

    # -- evaluation --------------------------------------------------------------------------------------------------

    def _eval_step(self, batch: Batch, loss_metric: MeanMetric) -> None:
        loss, num_tokens, _ = self._token_nll(batch, label_smoothing=0.0, teacher_forcing_ratio=1.0)
        loss_metric.update(loss, weight=num_tokens)
        self._outputs.update(zip(batch.indices.tolist(), self.translate(batch)))

    def _gather_outputs(self) -> dict[int, str]:
        """The hypotheses of every process (data-parallel evaluation decodes a share of the split on each), merged by
        corpus index, so that a sentence decoded twice (e.g. by a padding sampler) counts once; the local ones in a
        single process."""
        if self.trainer.world_size == 1 or not (dist.is_available() and dist.is_initialized()):
            return self._outputs
        parts: list[dict[int, str] | None] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, self._outputs)
        return {index: text for part in parts for index, text in (part or {}).items()}

    def _eval_epoch_end(self, stage: str, loss_metric: MeanMetric) -> dict[str, float]:
        """Score the hypotheses collected this epoch, on every process those of all processes, against the raw
        references of ``stage``'s split; every process logs the same scores."""
        datamodule = self.trainer.datamodule
        outputs = self._gather_outputs()
        indices = sorted(outputs)  # every decoded sentence once, in corpus order
        hypotheses = [outputs[i] for i in indices]
        all_references = datamodule.references(stage)
        references = [all_references[i] for i in indices]
        self._outputs = {}
        corpus = {name: m["score"] for name, m in corpus_metrics(hypotheses, references, ("bleu", "chrf")).items()}
        loss = loss_metric.compute()
        loss_metric.reset()
        scores = {f"{stage}/loss": loss, f"{stage}/ppl": torch.exp(loss), **{f"{stage}/{k}": v for k, v in corpus.items()}}
        if stage == "test":
            all_sources = datamodule.sources(stage)
            sources = [all_sources[i] for i in indices]
            buckets = bleu_by_source_length(sources, hypotheses, references, self.hparams.length_buckets)
            for label, bucket in buckets.items():
                scores[f"test/bleu_src_len_{label}"] = bucket["bleu"]
                scores[f"test/sentences_src_len_{label}"] = float(bucket["sentences"])
                scores[f"test/length_ratio_src_len_{label}"] = bucket["length_ratio"]
        # sync_dist: the values are equal on every process already (the mean of equal values is exact); it tells
        # Lightning so, instead of warning about epoch-level values logged unsynchronized.
        self.log_dict(scores, prog_bar=stage != "test", sync_dist=self.trainer.world_size > 1)
        return scores

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, self.val_loss)

    def on_validation_epoch_end(self) -> None:
        scores = self._eval_epoch_end("val", self.val_loss)
        if not self.trainer.sanity_checking:
            self.val_bleu_best.update(torch.tensor(scores["val/bleu"], device=self.device))
            best = self.val_bleu_best.compute()
            self.log("val/bleu_best", best, prog_bar=True, sync_dist=self.trainer.world_size > 1)
            if self._after_validation is not None:
                self._step_after_validation({**scores, "val/bleu_best": best})

    def _step_after_validation(self, scores: dict[str, Any]) -> None:
        """Step the scheduler of ``interval: validation`` with this validation's score (every process holds the same).

        Raises:
            ConfigError: the score it monitors is not one this validation computes.
        """
        monitor = self._after_validation["monitor"]
        if monitor not in scores:
            raise ConfigError(
                f"model.scheduler_config.monitor={monitor}: not a validation score (these are: {', '.join(sorted(scores))}). "
                f"Fix: monitor one of them"
            )
        self._after_validation["scheduler"].step(float(scores[monitor]))

    def on_validation_epoch_start(self) -> None:
        self._outputs = {}

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, self.test_loss)

    def on_test_epoch_start(self) -> None:
        self._outputs = {}

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test", self.test_loss)

    def predict_step(self, batch: Batch, batch_idx: int) -> list[str]:
        """The detokenized translations of a batch, in batch order; ``trainer.predict(module, datamodule)`` returns
        one such list per batch of the data module's predict loader (the test split in corpus order)."""
        return self.translate(batch)

    # -- optimization ------------------------------------------------------------------------------------------------

    def configure_optimizers(self) -> Any:
        optimizer = hydra.utils.instantiate(self.hparams.optimizer)(params=self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        try:
            max_steps = self.trainer.max_steps
        except RuntimeError:  # not attached to a Trainer (built by hand): schedules that need max_steps say so
            max_steps = -1
        entries = lightning_schedulers(optimizer, self.hparams.scheduler, self.hparams.scheduler_config, max_steps)
        settings = self.hparams.scheduler_config or {}
        # the last entry is the schedule itself (a separate warmup comes first)
        self._after_validation = entries[-1] if settings.get("interval") == AFTER_VALIDATION else None
        return [optimizer], entries

    # -- checkpoints -------------------------------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._nonfinite.check(self.global_step)  # no checkpoint after a non-finite loss not read yet
        if self.tokenizers is not None:
            checkpoint[TOKENIZERS_KEY] = self.tokenizers.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if TOKENIZERS_KEY in checkpoint:
            self.tokenizers = Tokenizers.from_state_dict(checkpoint[TOKENIZERS_KEY])
