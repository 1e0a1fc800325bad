"""memory -> backward (expand) model -> text, checked against what was stored.

The text is always regenerated from the memory tokens; a kept source is only read to measure
how faithful the rebuild is. `exact` compares the rebuild's sha256 with the hash recorded at
ingest, so it works in pure-memory archives too.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..archive import Archive
from ..errors import NotFound
from ..evaluation.metrics import char_similarity
from ..model.engine import MemoryEngine


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


def recall(archive: Archive, engine: MemoryEngine, doc: str, passage: int | None = None) -> dict:
    document = resolve_document(archive, doc)
    passages = archive.passages(document.id)
    if passage is not None:
        passages = [p for p in passages if p.index == passage]
        if not passages:
            raise NotFound(f"document {document.id} has no passage {passage} (it has {document.passages})")
    memory = archive.load_memory([p.id for p in passages])
    texts = engine.expand([memory[p.id] for p in passages])
    results = []
    for info, text in zip(passages, texts):
        original = archive.source_text(info.id)
        results.append({
            "passage": info.index,
            "text": text,
            "exact": hashlib.sha256(text.encode("utf-8")).hexdigest() == info.text_sha256,
            "similarity": None if original is None else round(char_similarity(text, original), 4),
        })
    similarities = [r["similarity"] for r in results if r["similarity"] is not None]
    return {
        "doc": document.id,
        "title": document.title,
        "passages": results,
        "exact_rate": sum(r["exact"] for r in results) / max(1, len(results)),
        "similarity": round(sum(similarities) / len(similarities), 4) if similarities else None,
    }
