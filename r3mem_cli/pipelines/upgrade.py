"""`r3mem upgrade`: give an archive written before exact codes what a new archive has.

Each passage's exact text is taken from its kept source, or (pure-memory archive) from its stored
memory and residual where that decodes to the stored hash here; every group of passages is then
coded (model/lmcode.py) and stored, and the memory tensors are dropped unless kept. A passage
with no exact text here stops the upgrade before anything changes: nothing is lost.
"""

from __future__ import annotations

from dataclasses import replace

from ..archive import Archive
from ..errors import R3memError
from ..model.engine import MemoryEngine
from .recall import rebuild


def upgrade(archive: Archive, engine: MemoryEngine, *, keep_memory: bool = False) -> dict:
    """Codes for every document; returns what was done."""
    if archive.settings.code:
        return {"upgraded": False, "reason": "the archive already stores exact codes", "documents": 0}
    documents = archive.documents()
    texts: dict[int, str] = {}
    lost = []
    for document in documents:
        passages = archive.passages(document.id)
        kept = {p.id: archive.source_text(p.id) for p in passages}
        missing = [p for p in passages if kept[p.id] is None]
        rebuilt = rebuild(archive, engine, missing) if missing else {}
        for p in passages:
            if kept[p.id] is not None:
                texts[p.id] = kept[p.id]
            elif rebuilt[p.id][1] == "residual":  # decoded here to the stored hash
                texts[p.id] = rebuilt[p.id][0]
            else:
                lost.append(f"{document.id}:{p.index}")
    if lost:
        raise R3memError(f"{len(lost)} passage(s) have no exact text on this machine (first: {lost[0]}), so they "
                         "cannot be given an exact code; nothing was changed")
    tokens = [[engine.token_ids(texts[p.id]) for p in archive.passages(d.id)] for d in documents]
    codes = {}
    group = archive.settings.coded_group
    for document, doc_codes in zip(documents, engine.encode_exact(tokens, group)):
        passages = archive.passages(document.id)
        for coded in doc_codes:
            codes[passages[coded.first].id] = (coded.code, engine.exact_coder.tag_for(group))
    before = archive.stats()["archive_bytes"]
    archive.adopt_codes(codes, replace(archive.settings, exact="code", store_memory=keep_memory))
    return {"upgraded": True, "documents": len(documents), "passages": len(texts), "codes": len(codes),
            "archive_bytes_before": before, "archive_bytes_after": archive.stats()["archive_bytes"]}
