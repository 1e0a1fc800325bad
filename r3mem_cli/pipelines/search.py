"""`r3mem search`: ranked passages for a query (DESIGN §1 JSON shape).

This first slice is keyword retrieval only: SQLite FTS5 / BM25 over the kept source text
(docs/decisions/0006-keyword-search.md). Memory-similarity retrieval, rank fusion and rerank
come later; a pure-memory archive gets a clear error until then.
"""

from __future__ import annotations

from r3mem_cli.archive import Archive

from .recall import resolve_document


def search(
    archive: Archive,
    query: str,
    top_k: int = 10,
    *,
    doc: str | None = None,
    kind: str | None = None,
    since: str | None = None,
    until: str | None = None,
    speaker: str | None = None,
) -> dict:
    """`{"query", "results": [{"doc", "passage", "score", "text", "source", "location"}]}`,
    best first. `doc` may be an id, a unique id prefix, or the path of the ingested file."""
    doc_id = resolve_document(archive, doc).id if doc is not None else None
    hits = archive.keyword_search(
        query, top_k=top_k, doc=doc_id, kind=kind, since=since, until=until, speaker=speaker
    )
    documents: dict[str, object] = {}
    results = []
    for info, score in hits:
        d = documents.get(info.doc_id) or documents.setdefault(info.doc_id, archive.document(info.doc_id))
        results.append(
            {
                "doc": info.doc_id,
                "passage": info.index,
                "score": round(score, 6),
                "text": archive.source_text(info.id),
                "source": d.source,
                "location": info.location,
            }
        )
    return {"query": query, "results": results}
