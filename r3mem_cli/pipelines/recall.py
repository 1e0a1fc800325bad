"""Recall: a document's passages given back exactly, checked against what was stored.

Exact (the default): each group of passages is decoded from its stored exact code under the
frozen model (model/lmcode.py), and every passage's sha256 is compared with the hash recorded at
ingest; `method` names how each passage came back. A passage whose code does not decode on this
machine is never shown as the original: the kept source is given instead, and says so, or
(pure-memory archive) the passage is reported as not recoverable here. Archives written before
exact codes rebuild from stored memory as they always did (the residual where one decodes).

Amortised (`amortised=True`, and the sentence and document levels): the lossy expansion of the
memory network, from stored memory where the archive keeps it, else from memory recomputed from
the exact text. `passage` rebuilds each passage from its passage memory, `sentence` each
sentence from its own sentence memory, `document` the document's opening from its state.
"""

from __future__ import annotations

import json

from ..archive import Archive
from ..errors import ArchiveError, NotFound
from ..evaluation.metrics import char_similarity
from ..model.engine import DecodeJob, MemoryEngine, PassageMemory
from .documents import resolve_document

CODE = "code"
NO_CODE_HERE = "the exact code did not decode on this machine"


def _group_size(coder: str) -> int | None:
    """The group size of a portable exact code (lmcode.py's tag), None for any other coder."""
    try:
        tag = json.loads(coder)
    except ValueError:
        return None
    return int(tag["group"]) if isinstance(tag, dict) and str(tag.get("coder", "")).startswith("lm") else None


def decode_exact(archive: Archive, engine: MemoryEngine, passages) -> dict[int, str | None]:
    """Passage id -> its text decoded from the exact code and matching its stored sha256, or None
    where it has no code or the code does not decode here. `passages` may be from any documents."""
    by_doc: dict[str, dict[int, object]] = {}
    for info in passages:
        by_doc.setdefault(info.doc_id, {})[info.index] = info
    out: dict[int, str | None] = {info.id: None for info in passages}
    jobs, members_of = [], []
    for doc_id, wanted in by_doc.items():
        every = {p.index: p for p in archive.passages(doc_id)}
        codes = archive.residuals([p.id for p in every.values()])
        firsts = [(every[i], *codes[every[i].id]) for i in sorted(every)
                  if every[i].id in codes and _group_size(codes[every[i].id][1])]
        for first, code, coder in firsts:
            size = _group_size(coder)
            upto = [i for i in wanted if first.index <= i < first.index + size]
            if not upto:
                continue
            members = [every[i] for i in range(first.index, max(upto) + 1) if i in every]
            jobs.append(DecodeJob(code, [m.tokens for m in members], coder, _draft(archive, engine, members)))
            members_of.append((members, wanted))
    try:
        decoded_groups = engine.decode_exact(jobs)
    except ValueError:  # a tag this version cannot read: decode the groups one by one
        decoded_groups = [_decode_one(engine, job) for job in jobs]
    for (members, wanted), decoded in zip(members_of, decoded_groups):
        for info, text in zip(members, decoded or []):
            if info.index in wanted and info.holds(text):
                out[info.id] = text
    return out


def _draft(archive: Archive, engine: MemoryEngine, members) -> list[list[int]] | None:
    """The kept source's token ids for these passages: what makes decoding as fast as encoding
    (lmcode.DecodeJob). None where there is no kept source or part of it is damaged: the code
    is then decoded token by token, and gives the text back all the same."""
    if not archive.keep_source:
        return None
    try:
        kept = [archive.source_text(m.id) for m in members]
    except ArchiveError:
        return None
    return None if None in kept else [engine.token_ids(text) for text in kept]


def _decode_one(engine: MemoryEngine, job: DecodeJob) -> list[str] | None:
    try:
        return engine.decode_exact([job])[0]
    except ValueError:
        return None


def check_decoding(archive: Archive, engine: MemoryEngine) -> tuple[dict, list[tuple[str, int, str]]]:
    """`verify --decode`: decode every coded passage and compare it with its stored hash, so an
    archive can be checked on a new machine before the old copy goes. Returns a summary and
    (document id, passage index, what is wrong) for every passage that does not decode."""
    import time

    started = time.perf_counter()
    failed, total = [], 0
    for document in archive.documents():
        passages = archive.passages(document.id)
        total += len(passages)
        decoded = decode_exact(archive, engine, passages)
        why = "its exact code does not decode to the stored text on this machine" if archive.settings.code \
            else "it has no exact code"
        failed += [(document.id, info.index, why) for info in passages if decoded[info.id] is None]
    return {"passages": total, "exact": total - len(failed), "seconds": round(time.perf_counter() - started, 1)}, failed


def stored_levels(archive: Archive, passages) -> dict[int, PassageMemory]:
    """Each passage's stored tensor split into its levels (passage, sentences, state)."""
    stored = archive.load_memory([p.id for p in passages])
    return {p.id: PassageMemory.unpack(stored[p.id], p.slots or 0, p.sentence_rows, p.state_rows) for p in passages}


def memory_levels(archive: Archive, engine: MemoryEngine, passages) -> dict[int, PassageMemory]:
    """Every level of memory of `passages`: stored where the archive keeps memory, else compressed
    again from the exact text (kept source or decoded code), each document from its first passage
    so the document state is the one ingest computed."""
    if archive.settings.store_memory:
        return stored_levels(archive, passages)
    out: dict[int, PassageMemory] = {}
    for doc_id in dict.fromkeys(p.doc_id for p in passages):
        every = archive.passages(doc_id)
        texts = exact_texts(archive, engine, every)
        missing = [p.index for p in every if texts[p.id][0] is None]
        if missing:
            raise NotFound(f"document {doc_id}: passage {missing[0]} is not recoverable on this machine, so its "
                           "memory cannot be recomputed")
        tokens = [engine.token_ids(texts[p.id][0]) for p in every]
        levels = engine.compress_documents([tokens], ratio=archive.settings.compression_ratio)[0]
        out.update({p.id: level for p, level in zip(every, levels)})
    return {p.id: out[p.id] for p in passages}


def exact_texts(archive: Archive, engine: MemoryEngine, passages) -> dict[int, tuple[str | None, str]]:
    """Passage id -> (exact text or None, how): decoded from the code, else the kept source."""
    decoded = decode_exact(archive, engine, passages)
    out = {}
    for info in passages:
        if decoded[info.id] is not None:
            out[info.id] = (decoded[info.id], CODE)
            continue
        source = archive.source_text(info.id)
        if source is not None:
            out[info.id] = (source, f"kept source ({NO_CODE_HERE})" if archive.settings.code else "kept source")
        elif archive.settings.code:
            out[info.id] = (None, f"not recoverable here: {NO_CODE_HERE}")
        else:
            out[info.id] = (None, "not recoverable: this archive keeps neither the text nor an exact code")
    return out


def rebuild(archive: Archive, engine: MemoryEngine, passages, *, amortised: bool = False
            ) -> dict[int, tuple[str | None, str]]:
    """Passage id -> (text, how). Exact archives: the exact text (exact_texts). Archives written
    before exact codes, or `amortised`: the memory network's expansion, from stored memory (and
    the residual where one decodes to the stored hash) or from memory recomputed from the text."""
    if archive.settings.code and not amortised:
        return exact_texts(archive, engine, passages)
    levels = memory_levels(archive, engine, passages)
    texts = engine.expand([levels[p.id].memory for p in passages])
    residuals = {} if amortised else archive.residuals([p.id for p in passages])
    out = {}
    recomputed = "" if archive.settings.store_memory else ", memory recomputed from the exact text"
    for info, text in zip(passages, texts):
        method = f"amortised{recomputed}" if amortised else "memory"
        if info.id in residuals and not _group_size(residuals[info.id][1]):
            decoded = engine.decode_residual(levels[info.id].memory, residuals[info.id][0], info.tokens)
            if info.holds(decoded):
                text, method = decoded, "residual"
            else:
                method = "memory (the residual did not decode on this machine's numerics)"
        out[info.id] = (text, method)
    return out


def rebuild_passages(archive: Archive, engine: MemoryEngine, passages) -> dict[int, str | None]:
    return {pid: text for pid, (text, _) in rebuild(archive, engine, passages).items()}


def recall(archive: Archive, engine: MemoryEngine, doc: str, passage: int | None = None,
           level: str = "passage", amortised: bool = False) -> dict:
    document = resolve_document(archive, doc)
    passages = archive.passages(document.id)
    if level == "document":
        return _recall_document(archive, engine, document, passages)
    if passage is not None:
        passages = [p for p in passages if p.index == passage]
        if not passages:
            raise NotFound(f"document {document.id} has no passage {passage} (it has {document.passages})")
    if level == "sentence":
        return _recall_sentences(archive, engine, document, passages, memory_levels(archive, engine, passages))
    rebuilt = rebuild(archive, engine, passages, amortised=amortised)
    results = []
    for info in passages:
        text, method = rebuilt[info.id]
        exact = text is not None and info.holds(text)
        # an exact text is the original; only a lossy rebuild is compared with the kept source
        original = text if exact and archive.keep_source else None if exact else archive.source_text(info.id)
        results.append({
            "passage": info.index,
            "text": text,
            "exact": exact,
            "method": method,
            "similarity": None if original is None or text is None else round(char_similarity(text, original), 4),
        })
    similarities = [r["similarity"] for r in results if r["similarity"] is not None]
    return {
        "doc": document.id,
        "title": document.title,
        "level": "passage",
        "amortised": amortised,
        "passages": results,
        "exact_rate": sum(r["exact"] for r in results) / max(1, len(results)),
        "similarity": round(sum(similarities) / len(similarities), 4) if similarities else None,
    }


def _recall_sentences(archive, engine, document, passages, levels) -> dict:
    """Each sentence regenerated from its own sentence memory (one memory token by default)."""
    ms = engine.config.sentence_slots
    rows = [(p, k) for p in passages for k in range(levels[p.id].sentences.shape[0] // ms)]
    texts = engine.expand([levels[p.id].sentences[k * ms:(k + 1) * ms] for p, k in rows], level="sentence")
    out: dict[int, list[str]] = {}
    for (info, _), text in zip(rows, texts):
        out.setdefault(info.index, []).append(text)
    results = []
    for info in passages:
        original = archive.source_text(info.id)
        joined = " ".join(out.get(info.index, []))
        results.append({"passage": info.index, "sentences": out.get(info.index, []),
                        "similarity": None if original is None else round(char_similarity(joined, original), 4)})
    similarities = [r["similarity"] for r in results if r["similarity"] is not None]
    return {"doc": document.id, "title": document.title, "level": "sentence", "passages": results,
            "similarity": round(sum(similarities) / len(similarities), 4) if similarities else None}


def _recall_document(archive, engine, document, passages) -> dict:
    """The document's opening passage, regenerated from the document state alone."""
    last = passages[-1] if passages else None
    if last is None or (archive.settings.store_memory and not last.state_rows):
        raise NotFound(f"document {document.id} has no document memory (ingested before r3mem kept one)")
    state = memory_levels(archive, engine, [last])[last.id].state
    text = engine.expand([state], level="document")[0]
    original = archive.source_text(passages[0].id)
    return {"doc": document.id, "title": document.title, "level": "document", "opening": text,
            "similarity": None if original is None else round(char_similarity(text, original), 4)}
