"""The one path from passages' token ids to the memory an archive stores: the engine's compress
pass under the archive's settings (compression ratio, exact-recall method, precision), then one
StoredMemory per passage: its memory tensors if the archive stores them, its search keys, and
on the first passage of each coded group the group's exact code (model/lmcode.py). Ingest and
`verify --repair` both go through here, so repaired memory is made exactly as ingested memory is.
An archive that stores neither memory nor search keys (the default with kept sources) skips the
compress pass altogether: nothing it makes would be kept."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..archive import ArchiveSettings, StoredMemory
from ..archive.precision import round_rows
from ..model.engine import MemoryEngine


@dataclass
class CompressedDocument:
    passages: list[StoredMemory]
    search_key: torch.Tensor | None  # [K], of the document state
    refined: list[bool | None]  # per passage with exact=refine: did refinement converge


def compress_for_archive(engine: MemoryEngine, settings: ArchiveSettings,
                         documents: list[list[list[int]]]) -> list[CompressedDocument]:
    """Token ids per passage per document -> what the archive stores for each passage."""
    group = settings.coded_group
    codes = [{g.first: g.code for g in groups} for groups in engine.encode_exact(documents, group)] \
        if settings.code else [{} for _ in documents]
    if not settings.store_memory and settings.search_keys is False:  # nothing the compress pass makes is kept
        out = [CompressedDocument([StoredMemory(memory=None) for _ in doc], None, [None] * len(doc))
               for doc in documents]
    else:
        out = _compressed(engine, settings, documents)
    for document, doc_codes in zip(out, codes):  # a group's code goes with its first passage
        for first, code in doc_codes.items():
            document.passages[first].residual, document.passages[first].coder = code, engine.exact_coder.tag_for(group)
    return out


def _compressed(engine: MemoryEngine, settings: ArchiveSettings,
                documents: list[list[list[int]]]) -> list[CompressedDocument]:
    """The compress pass: memory tensors where stored, search keys where stored, and the older
    exact methods (refined memory, a residual under it)."""
    levels = engine.compress_documents(
        documents, ratio=settings.compression_ratio, refine_steps=settings.refine_steps if settings.refine else 0,
        refine_lr=settings.refine_lr, round_memory=round_rows if settings.int8 else None)
    coder = engine.coder_tag() if settings.residual else None
    keys = settings.search_keys is not False
    out = []
    for doc_levels, doc_tokens in zip(levels, documents):
        passages = [
            StoredMemory(memory=level.packed() if settings.store_memory else None,
                         sentence_rows=level.sentences.shape[0] if settings.store_memory else 0,
                         state_rows=0 if level.state is None or not settings.store_memory else level.state.shape[0],
                         residual=engine.encode_residual(level.memory, ids) if coder else None, coder=coder,
                         search_keys=level.keys if keys else None)
            for level, ids in zip(doc_levels, doc_tokens)]
        out.append(CompressedDocument(passages, doc_levels[-1].state_key if doc_levels and keys else None,
                                      [level.refined for level in doc_levels]))
    return out
