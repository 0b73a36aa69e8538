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

from .data import Batch, Tokenizers
from .metrics import bleu_by_source_length, corpus_metrics
from .modules import Seq2Seq
from .search import GreedySearch, Hypotheses
from .teacher_forcing import Constant
from .utils.nonfinite import check_nonfinite_action, on_nonfinite_loss

log = logging.getLogger(__name__)

TOKENIZERS_KEY = "seq2seq_lit_tokenizers"


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
        scheduler: optional ``_partial_`` LR scheduler config, completed with the optimizer.
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
    ) -> None:
        super().__init__()
        check_nonfinite_action(nonfinite_loss)
        encoder, attention, decoder = _plain(encoder), _plain(attention), _plain(decoder)
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
        self.tokenizers: Tokenizers | None = None
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.val_bleu_best = MaxMetric()
        self._outputs: dict[int, str] = {}  # corpus index -> hypothesis, for the running evaluation

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

    def _token_nll(self, batch: Batch, label_smoothing: float, teacher_forcing_ratio: float) -> tuple[torch.Tensor, int]:
        """Mean cross-entropy per non-pad target token, and that token count."""
        schedule = self.teacher_forcing
        logits, _ = self.net(
            batch.src, batch.src_lengths, batch.tgt_in, teacher_forcing_ratio, schedule.feed, schedule.parallel
        )  # (B, T, V)
        num_tokens = batch.num_tgt_tokens
        loss = F.cross_entropy(
            logits.flatten(0, 1).float(),
            batch.tgt_out.flatten(),
            ignore_index=self.hparams.pad_id,
            label_smoothing=label_smoothing,
            reduction="sum",
        )
        return loss / num_tokens, num_tokens

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor | None:
        ratio = self.teacher_forcing(self.global_step)
        loss, _ = self._token_nll(batch, self.hparams.label_smoothing, ratio)
        if not torch.isfinite(loss):  # stop raises; skip returns None, which makes Lightning skip the update
            return on_nonfinite_loss(self.hparams.nonfinite_loss, loss, self.global_step, self.current_epoch, batch_idx)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch))
        self.log("train/teacher_forcing_ratio", ratio, batch_size=len(batch))
        return loss

    # -- evaluation --------------------------------------------------------------------------------------------------

    def _eval_step(self, batch: Batch, loss_metric: MeanMetric) -> None:
        loss, num_tokens = self._token_nll(batch, label_smoothing=0.0, teacher_forcing_ratio=1.0)
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
            for label, bucket in bleu_by_source_length(sources, hypotheses, references).items():
                scores[f"test/bleu_src_len_{label}"] = bucket["bleu"]
        # sync_dist: the values are equal on every process already (the mean of equal values is exact); it tells
        # Lightning so, instead of warning about epoch-level values logged unsynchronized.
        self.log_dict(scores, prog_bar=stage != "test", sync_dist=self.trainer.world_size > 1)
        return scores

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, self.val_loss)

    def on_validation_epoch_end(self) -> None:
        scores = self._eval_epoch_end("val", self.val_loss)
        if not self.trainer.sanity_checking:
            self.val_bleu_best.update(torch.tensor(scores["val/bleu"]))
            self.log("val/bleu_best", self.val_bleu_best.compute(), prog_bar=True, sync_dist=self.trainer.world_size > 1)

    def on_validation_epoch_start(self) -> None:
        self._outputs = {}

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, self.test_loss)

    def on_test_epoch_start(self) -> None:
        self._outputs = {}

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test", self.test_loss)

    # -- optimization ------------------------------------------------------------------------------------------------

    def configure_optimizers(self) -> Any:
        optimizer = hydra.utils.instantiate(self.hparams.optimizer)(params=self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        scheduler = hydra.utils.instantiate(self.hparams.scheduler)(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, **(self.hparams.scheduler_config or {})}}

    # -- checkpoints -------------------------------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.tokenizers is not None:
            checkpoint[TOKENIZERS_KEY] = self.tokenizers.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if TOKENIZERS_KEY in checkpoint:
            self.tokenizers = Tokenizers.from_state_dict(checkpoint[TOKENIZERS_KEY])
