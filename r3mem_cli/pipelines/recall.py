"""memory -> backward (expand) model -> text, checked against what was stored.

The text is always regenerated from the memory tokens; a kept source is only read to measure
how faithful the rebuild is. `exact` compares the rebuild's sha256 with the hash recorded at
ingest, so it works in pure-memory archives too. Where ingest stored a residual, the passage is
decoded from memory + residual (exact by construction on the same numerics); if the hash says
otherwise, the greedy rebuild is returned and `method` says the residual did not decode.

Levels: `passage` rebuilds each passage from its passage memory, `sentence` each sentence from
its own sentence memory, `document` the document's opening from its fixed-size document state.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..archive import Archive
from ..errors import NotFound
from ..evaluation.metrics import char_similarity
from ..model.engine import MemoryEngine, PassageMemory


def resolve_document(archive: Archive, ref: str):
    """A document by id (or unique prefix), or by the path of the file it was read from."""
    try:
        return archive.document(ref)
    except NotFound:
        path = Path(ref)
        found = archive.find_by_source(str(path.resolve())) if path.exists() else None
        if found is None:
            raise
        return found


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def stored_levels(archive: Archive, passages) -> dict[int, PassageMemory]:
    """Each passage's stored tensor split into its levels (passage, sentences, state)."""
    stored = archive.load_memory([p.id for p in passages])
    return {p.id: PassageMemory.unpack(stored[p.id], p.slots or 0, p.sentence_rows, p.state_rows) for p in passages}


def rebuild(archive: Archive, engine: MemoryEngine, passages) -> dict[int, tuple[str, str]]:
    """Passage id -> (text rebuilt from memory, how): the residual where one decodes to the
    stored hash, else greedy expansion of the passage memory."""
    levels = stored_levels(archive, passages)
    texts = engine.expand([levels[p.id].memory for p in passages])
    residuals = archive.residuals([p.id for p in passages])
    out = {}
    for info, text in zip(passages, texts):
        method = "memory"
        if info.id in residuals:
            decoded = engine.decode_residual(levels[info.id].memory, residuals[info.id][0], info.tokens)
            if _sha(decoded) == info.text_sha256:
                text, method = decoded, "residual"
            else:
                method = "memory (the residual did not decode on this machine's numerics)"
        out[info.id] = (text, method)
    return out


def rebuild_passages(archive: Archive, engine: MemoryEngine, passages) -> dict[int, str]:
    return {pid: text for pid, (text, _) in rebuild(archive, engine, passages).items()}


def recall(archive: Archive, engine: MemoryEngine, doc: str, passage: int | None = None,
           level: str = "passage") -> dict:
    document = resolve_document(archive, doc)
    passages = archive.passages(document.id)
    if level == "document":
        return _recall_document(archive, engine, document, passages)
    if passage is not None:
        passages = [p for p in passages if p.index == passage]
        if not passages:
            raise NotFound(f"document {document.id} has no passage {passage} (it has {document.passages})")
    if level == "sentence":
        return _recall_sentences(archive, engine, document, passages, stored_levels(archive, passages))
    rebuilt = rebuild(archive, engine, passages)
    results = []
    for info in passages:
        text, method = rebuilt[info.id]
        original = archive.source_text(info.id)
        results.append({
            "passage": info.index,
            "text": text,
            "exact": _sha(text) == info.text_sha256,
            "method": method,
            "similarity": None if original is None else round(char_similarity(text, original), 4),
        })
    similarities = [r["similarity"] for r in results if r["similarity"] is not None]
    return {
        "doc": document.id,
        "title": document.title,
        "level": "passage",
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
    if last is None or not last.state_rows:
        raise NotFound(f"document {document.id} has no document memory (ingested before r3mem kept one)")
    state = stored_levels(archive, [last])[last.id].state
    text = engine.expand([state], level="document")[0]
    original = archive.source_text(passages[0].id)
    return {"doc": document.id, "title": document.title, "level": "document", "opening": text,
            "similarity": None if original is None else round(char_similarity(text, original), 4)}
