"""`r3mem search`: ranked passages for a query (DESIGN §1 JSON shape).

Two retrieval paths:
  keyword  SQLite FTS5 / BM25 over kept source text (docs/decisions/0006);
  memory   the query compressed by the archive's own network into a sentence memory, compared
           (whitened cosine of search keys) with every passage's sentence memories; with
           `coarse`, documents are ranked by their document-state key first and only the best
           ones' passages are compared.
How they combine (`mode`): `auto` (the default) ranks keyword hits first and fills the rest
with memory hits, so a query that shares no word with the archive still finds something;
`hybrid` fuses both by weighted reciprocal rank (RRF, k=60). On LoCoMo the memory path is the
weaker ranker and fusing it in lowers recall, so it fills in rather than votes (decision 0009).
An optional rerank orders the best candidates by the backward model's likelihood of the query
given each passage's memory (stored, or recomputed from the exact text). A pure-memory archive
has the keyword index too (since decision 0033; before, the memory path only), and its result
text is decoded from the exact code.
"""

from __future__ import annotations

from r3mem_cli.archive import Archive
from r3mem_cli.choices import SEARCH_MODES
from r3mem_cli.errors import BadParameter, R3memError

from .documents import resolve_document

RRF_K = 60
# Fusion weights for `hybrid`: the memory path is the weaker ranker (bench/locomo.py), so its
# ranks count for less than BM25's; they still lift passages both paths agree on.
WEIGHTS = {"keyword": 1.0, "memory": 0.5}


def needs_engine(archive: Archive, mode: str = "auto", rerank: int = 0) -> bool:
    """Whether `search` with these settings uses the model: the memory path (only where the
    archive stores search keys), reranking, or a pure-memory archive's text (decoded from its
    code). Keyword search over kept text needs none, so it starts without loading it."""
    uses_memory = mode in ("auto", "hybrid", "memory") and archive.has_search_keys()
    return uses_memory or rerank > 0 or not archive.keep_source


def search(
    archive: Archive,
    query: str,
    top_k: int = 10,
    *,
    engine=None,
    mode: str = "auto",
    coarse: int | None = None,
    rerank: int = 0,
    doc: str | None = None,
    kind: str | None = None,
    since: str | None = None,
    until: str | None = None,
    speaker: str | None = None,
) -> dict:
    """`{"query", "mode", "results": [{"doc", "passage", "score", "text", "source", "location",
    "scores"}]}`, best first. `doc` may be an id, a unique id prefix, or the ingested file's path.
    `engine` (a MemoryEngine) is needed for the memory path and for pure-memory result text."""
    if mode not in SEARCH_MODES:
        raise BadParameter("mode", f"must be one of {', '.join(SEARCH_MODES)} (got {mode!r})")
    if top_k < 1:
        raise BadParameter("top_k", f"must be at least 1 (got {top_k})")
    doc_id = resolve_document(archive, doc).id if doc is not None else None
    wanted = archive.passage_filter(doc=doc_id, kind=kind, since=since, until=until, speaker=speaker)
    use_keyword = archive.keyword_indexed and mode in ("auto", "hybrid", "keyword")
    use_memory = mode in ("auto", "hybrid", "memory") and engine is not None and archive.has_search_keys()
    if mode == "keyword" and not archive.keyword_indexed:
        raise R3memError("this pure-memory archive has no keyword index (it was made before pure-memory archives "
                         "had one); search its memory instead")
    if mode in ("memory", "hybrid") and not use_memory:
        raise R3memError("this archive stores no search keys for the memory path (they are off by default where "
                         "there is a keyword index: `r3mem init --search-keys` stores them); search by keyword")
    depth = max(50, 5 * top_k)
    ranked: dict[str, list] = {}
    if use_keyword:
        ranked["keyword"] = archive.keyword_search(query, top_k=depth, wanted=wanted)
    if use_memory:
        ranked["memory"] = archive.memory_search(engine.query_key(query), top_k=depth, wanted=wanted,
                                                 coarse_documents=coarse)
    best = _fill(ranked) if mode == "auto" and len(ranked) > 1 else _fuse(ranked)
    if rerank and engine is not None and best:
        best = _rerank(archive, engine, query, best[: max(rerank, top_k)])
    best = best[:top_k]
    texts = _texts(archive, engine, [e["info"] for e in best])
    documents: dict[str, object] = {}
    results = []
    for entry in best:
        info = entry["info"]
        d = documents.get(info.doc_id) or documents.setdefault(info.doc_id, archive.document(info.doc_id))
        # One path alone keeps its own score (BM25 or cosine); fused results carry the RRF score.
        score = entry["scores"]["rerank"] if "rerank" in entry["scores"] else \
            entry["rrf"] if len(ranked) > 1 else next(iter(entry["scores"].values()))
        results.append({"doc": info.doc_id, "passage": info.index, "score": round(score, 6),
                        "text": texts[info.id], "source": d.source, "location": info.location,
                        "scores": entry["scores"]})
    return {"query": query, "mode": "+".join(ranked) or "none", "results": results}


def _fuse(ranked: dict[str, list]) -> list[dict]:
    """Weighted reciprocal-rank fusion of every path's ranking."""
    fused: dict[int, dict] = {}
    for path, hits in ranked.items():
        for rank, (info, score) in enumerate(hits, start=1):
            entry = fused.setdefault(info.id, {"info": info, "rrf": 0.0, "scores": {}})
            entry["rrf"] += WEIGHTS[path] / (RRF_K + rank)
            entry["scores"][path] = round(score, 6)
    return sorted(fused.values(), key=lambda e: (-e["rrf"], e["info"].id))


def _fill(ranked: dict[str, list]) -> list[dict]:
    """Keyword hits in BM25 order, then memory hits the keyword path did not find; the score is
    the reciprocal of the final rank (as RRF would give one path), every path's own score kept."""
    entries: dict[int, dict] = {}
    for path in ("keyword", "memory"):
        for info, score in ranked[path]:
            entries.setdefault(info.id, {"info": info, "scores": {}})["scores"][path] = round(score, 6)
    for rank, entry in enumerate(entries.values(), start=1):  # dicts keep insertion order
        entry["rrf"] = 1.0 / (RRF_K + rank)
    return list(entries.values())


def _rerank(archive: Archive, engine, query: str, entries: list[dict]) -> list[dict]:
    """Order candidates by the backward model's likelihood of the query given each passage's
    memory (mean log-probability per query token)."""
    from .recall import memory_levels  # torch: only when memory is read

    infos = [e["info"] for e in entries]
    levels = memory_levels(archive, engine, infos)
    memories = [levels[i.id].memory for i in infos]
    for entry, score in zip(entries, engine.query_likelihood(memories, query)):
        entry["scores"]["rerank"] = round(score, 6)
    return sorted(entries, key=lambda e: (-e["scores"]["rerank"], e["info"].id))


def _texts(archive: Archive, engine, infos) -> dict[int, str | None]:
    """Stored originals, or (pure-memory archives) the passages decoded from their exact code."""
    if archive.keep_source or not infos:
        return {info.id: archive.source_text(info.id) for info in infos}
    from .recall import rebuild_passages

    return rebuild_passages(archive, engine, infos)
