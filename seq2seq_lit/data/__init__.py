"""Data layer: corpora, sentencepiece tokenizers, batching and the Lightning data module."""

from seq2seq_lit.data.arrays import TokenArrays
from seq2seq_lit.data.batching import Batch, BucketBatchSampler, TranslationDataset, collate
from seq2seq_lit.data.corpus import (
    SPLITS,
    Corpus,
    ParallelText,
    iter_line_blocks,
    iter_parallel,
    read_lines,
    read_parallel,
)
from seq2seq_lit.data.datamodule import TranslationDataModule, eval_dataloader, make_dataloader
from seq2seq_lit.data.download import fetch_gzip
from seq2seq_lit.data.multi30k import Multi30k
from seq2seq_lit.data.store import CorpusStore, open_store
from seq2seq_lit.data.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    SentencePieceTokenizer,
    Tokenizers,
    build_tokenizers,
    train_sentencepiece,
)

__all__ = [
    "BOS_ID",
    "EOS_ID",
    "PAD_ID",
    "SPLITS",
    "UNK_ID",
    "Batch",
    "BucketBatchSampler",
    "Corpus",
    "CorpusStore",
    "Multi30k",
    "ParallelText",
    "SentencePieceTokenizer",
    "TokenArrays",
    "Tokenizers",
    "TranslationDataModule",
    "TranslationDataset",
    "build_tokenizers",
    "collate",
    "eval_dataloader",
    "fetch_gzip",
    "iter_line_blocks",
    "iter_parallel",
    "make_dataloader",
    "open_store",
    "read_lines",
    "read_parallel",
    "train_sentencepiece",
]
