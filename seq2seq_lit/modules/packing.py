"""Packing a padded batch for the RNNs, and padding it back, without waiting for the device.

Shapes: B batch, S padded length, N packed rows (the sum of the lengths).

PyTorch's ``pack_padded_sequence(..., enforce_sorted=False)`` copies the sort order to the device with a blocking
copy, and ``pad_packed_sequence`` copies the reverse order back to the host to reorder the lengths: each waits until
the device has run every kernel queued before it, once per batch. These versions take the lengths on the host
(where :class:`~seq2seq_lit.data.Batch` keeps them for training), copy the order asynchronously, and reorder the
padded output on the device.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence


def pack(padded: Tensor, lengths: Tensor) -> PackedSequence:
    """``pack_padded_sequence(padded, lengths, batch_first=True, enforce_sorted=False)`` for ``padded`` ``(B, S, *)``
    and ``lengths`` ``(B,)``, without a host sync when ``lengths`` is on the host (device lengths are copied to it
    first: one sync).

    Raises:
        RuntimeError: as PyTorch's, for a length of 0 or above S.
    """
    sorted_lengths, order = torch.sort(lengths.cpu(), descending=True)
    order = order.to(padded.device, non_blocking=True)  # from pageable memory: staged at once, no wait for the device
    packed = pack_padded_sequence(padded.index_select(0, order), sorted_lengths, batch_first=True)
    return PackedSequence(packed.data, packed.batch_sizes, order)  # unsorted_indices: inverted on the device


def unpack(packed: PackedSequence, total_length: int) -> Tensor:
    """The padded ``(B, total_length, *)`` batch of ``packed`` in its original order, zero on padding: the output of
    ``pad_packed_sequence(packed, batch_first=True, total_length=total_length)`` without its host sync."""
    padded, _ = pad_packed_sequence(PackedSequence(packed.data, packed.batch_sizes), batch_first=True, total_length=total_length)
    return padded if packed.unsorted_indices is None else padded.index_select(0, packed.unsorted_indices)
