"""What the archive holds, one document's provenance, and forgetting: the objects `list`, `show`
and `forget` print with --json, built here so the command line and the MCP server give the same."""

from __future__ import annotations

from pathlib import Path

from ..archive import Archive
from ..errors import NotFound

ADAPTER_LEARNED_FORGOTTEN = ("the archive's adapter was trained on a forgotten document and may still hold what it "
                             "learned from it; train a new adapter without it (`r3mem train`) and rebuild the "
                             "archive with `r3mem init --adapter`")


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


def list_documents(archive: Archive) -> list[dict]:
    """`list --json`'s documents, in the archive's order."""
    return [{"id": d.id, "source": d.source, "kind": d.kind, "title": d.title, "passages": d.passages,
             "tokens": d.tokens, "ingested_at": d.ingested_at} for d in archive.documents()]


def show_document(archive: Archive, ref: str) -> dict:
    """One document's provenance and passages; `ref` is an id, a unique id prefix or a source path."""
    d = resolve_document(archive, ref)
    passages = [{"passage": p.index, "tokens": p.tokens, "memory_tokens": p.slots, "location": p.location,
                 "sha256": p.text_sha256} for p in archive.passages(d.id)]
    return {"id": d.id, "source": d.source, "kind": d.kind, "title": d.title, "tokens": d.tokens,
            "ingested_at": d.ingested_at, "content_sha256": d.content_sha256, "metadata": d.metadata,
            "passages": passages}


def forget_documents(archive: Archive, refs: list[str]) -> dict:
    """Remove documents (ids, prefixes or source paths) from an archive opened for writing.
    `adapter_trained_on_forgotten` is true when this forget is what flagged the archive's adapter
    as having learned from a forgotten document."""
    ids = [resolve_document(archive, ref).id for ref in refs]
    learned = archive.adapter_trained_on_forgotten
    removed = archive.forget(ids)
    flagged = archive.adapter_trained_on_forgotten is not None and archive.adapter_trained_on_forgotten != learned
    return {"forgotten": removed, "adapter_trained_on_forgotten": flagged}
