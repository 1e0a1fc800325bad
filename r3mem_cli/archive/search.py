"""Finding passages in the manifest: search filters, keyword search (SQLite FTS5, BM25) over kept
text, and memory search over the stored search keys (keyspace.py). The Archive calls these with
its manifest connection; pipelines/search.py decides how the two paths are combined."""

from __future__ import annotations

import math
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from r3mem_cli.choices import DOCUMENT_KINDS
from r3mem_cli.errors import ArchiveError, BadParameter

from . import manifest as mf
from .keyspace import KeyIndex
from .records import PassageInfo, key_from_blob, passage_info

if TYPE_CHECKING:  # torch is imported where tensors are made or read, so commands that need none start fast
    import torch

MAX_QUERY_TERMS = 64
# BM25's constants, as FTS5's own bm25() has them; FTS5 also floors a term's weight at 1e-6.
BM25_K1, BM25_B, BM25_MIN_IDF = 1.2, 0.75, 1e-6
# The columns of mf.PASSAGE_QUERY plus the document's ingested_at, for passages joined with documents.
_PASSAGE_COLUMNS = (f"p.id, p.doc_id, p.idx, p.text_sha256, p.tokens, {mf.GROUP_LOCATIONS}, m.slots, "
                    "m.sentence_rows, m.state_rows, d.ingested_at")


def _tokens(texts: list[str], tokenize: str) -> list[list[str]]:
    """Each text's tokens under an FTS5 `tokenize` setting, in order (a private in-memory table)."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        conn.execute(f"CREATE VIRTUAL TABLE q USING fts5(text, tokenize='{tokenize}')")
        conn.execute("CREATE VIRTUAL TABLE temp.v USING fts5vocab(main, q, 'instance')")
        conn.executemany("INSERT INTO q (rowid, text) VALUES (?, ?)", enumerate(texts, 1))
        out: list[list[str]] = [[] for _ in texts]
        for doc, term in conn.execute("SELECT doc, term FROM temp.v ORDER BY doc, offset"):
            out[doc - 1].append(term)
        return out
    finally:
        conn.close()


def query_terms(text: str, tokenize: str = mf.WORD_TOKENIZE) -> list[str]:
    """Free text -> its words as the keyword index's tokenizer folds them before it stems them (or
    the tokens of another FTS5 `tokenize` setting), in order, duplicates dropped, at most
    MAX_QUERY_TERMS. Words, not stems, are what a MATCH takes: FTS5 stems them as it looks them up."""
    return list(dict.fromkeys(_tokens([str(text or "")], tokenize)[0]))[:MAX_QUERY_TERMS]


def index_words(text: str) -> list[str]:
    """The words `text` searches the keyword index with: without the function words the index leaves
    out, folded as it folds them, one per Porter stem. Words, not stems: FTS5 stems each word of a
    query as it looks it up, and a stem stemmed again can be another ("convers" -> "conver")."""
    words = query_terms(mf.index_text(text))
    firsts: dict[str, str] = {}
    for word, stems in zip(words, _tokens(words, mf.FTS_TOKENIZE)):
        firsts.setdefault(stems[0] if stems else word, word)
    return list(firsts.values())


def quoted(term: str) -> str:
    """One term as an FTS5 string, so AND/OR/NEAR/*/( in it are plain words."""
    return '"' + term.replace('"', '""') + '"'


def fts_query(text: str, tokenize: str = mf.WORD_TOKENIZE) -> str | None:
    """Free text -> a safe FTS5 query: its terms (query_terms, by `tokenize`), each quoted, OR-ed
    together; None when the text has no words."""
    terms = query_terms(text, tokenize)
    return " OR ".join(map(quoted, terms)) if terms else None


def to_utc(value: str) -> datetime | None:
    """An ISO date or date-time as an aware UTC datetime (no zone = UTC); None if it is not one."""
    try:
        moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def parse_when(value: str, name: str, *, end: bool) -> datetime:
    """`since`/`until`: an ISO date (a whole day: `until` includes all of it) or date-time;
    one without a zone is read as UTC."""
    text = str(value).strip()
    moment = to_utc(text)
    if moment is None:
        raise BadParameter(name, f"{value!r} is not an ISO date (YYYY-MM-DD) or date-time")
    if end and re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        moment = moment + timedelta(days=1) - timedelta(microseconds=1)
    return moment


def passage_times(location: dict, ingested_at: str) -> tuple[datetime | None, datetime | None]:
    """The time span a passage covers: its chat turns' first/last timestamps, else the
    document's ingestion time."""
    stamps = location.get("timestamps") if isinstance(location, dict) else None
    if isinstance(stamps, list) and stamps:
        got = [to_utc(s) for s in stamps if isinstance(s, str)]
        got = [g for g in got if g is not None]
        if got:
            return min(got), max(got)
    when = to_utc(ingested_at)
    return when, when


@dataclass
class PassageFilter:
    """Which passages a search may return (built by `passage_filter`)."""

    doc: str | None = None
    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    speaker: str | None = None  # casefolded

    def where(self) -> tuple[str, list]:
        """SQL conditions on `p` (passages) and `d` (documents), and their arguments."""
        sql, args = "", []
        if self.doc is not None:
            sql, args = sql + f" AND d.id = ? AND {mf.DOCUMENT_PASSAGES}", args + [self.doc]
        if self.kind is not None:
            sql, args = sql + " AND d.kind = ?", args + [self.kind]
        return sql, args

    @property
    def beyond_sql(self) -> bool:
        """Whether `accepts` has anything to check that `where` does not."""
        return self.speaker is not None or self.since is not None or self.until is not None

    def accepts(self, info: PassageInfo, ingested_at: str) -> bool:
        """The filters SQL cannot express: speakers and times inside the provenance JSON."""
        if self.speaker is not None:
            names = info.location.get("speakers") or []
            if not any(isinstance(n, str) and n.casefold() == self.speaker for n in names):
                return False
        if self.since is not None or self.until is not None:
            start, end = passage_times(info.location, ingested_at)
            if start is None or (self.since is not None and end < self.since) or (
                    self.until is not None and start > self.until):
                return False
        return True


def passage_filter(*, doc_id: str | None = None, kind=None, since=None, until=None, speaker=None) -> PassageFilter:
    """Validated filters: `doc_id` (a resolved document id), `kind` ('document' or 'chat'),
    `since`/`until` (ISO date or date-time, inclusive; a chat passage is dated by its turns'
    timestamps, anything else by its document's ingested_at), `speaker` (case-insensitive, one
    of the chat passage's speakers)."""
    if kind is not None and kind not in DOCUMENT_KINDS:
        raise BadParameter("kind", f"must be 'document' or 'chat' (got {kind!r})")
    return PassageFilter(
        doc=doc_id, kind=kind,
        since=parse_when(since, "since", end=False) if since else None,
        until=parse_when(until, "until", end=True) if until else None,
        speaker=speaker.casefold() if speaker else None)


def passages_where(conn: sqlite3.Connection, where: str, args: list) -> list[tuple[PassageInfo, str]]:
    """(passage, its document's ingested_at) for passages matching SQL conditions on p and d."""
    rows = conn.execute(
        f"SELECT {_PASSAGE_COLUMNS} FROM passages p JOIN documents d ON d.id = p.doc_id {mf.GROUP_JOIN} "
        "LEFT JOIN memory m ON m.passage_id = p.id WHERE 1=1" + where, args).fetchall()
    return [(passage_info(row[:9]), row[9]) for row in rows]


def keyword_search(conn: sqlite3.Connection, query: str, *, top_k: int, wanted: PassageFilter,
                   source_text: Callable[[int], str | None] | None) -> list[tuple[PassageInfo, float]]:
    """Passages ranked by BM25 over their words, best first; score > 0.

    Every word of `query` (index_words) is looked up on its own and a passage scores the BM25
    weight of each term it holds, counted once: the index keeps which passages hold a term but
    not where or how often (detail=none, docs/decisions/0027), and in passages of a few dozen
    words a second occurrence is rare (the same recall@5 on LoCoMo dev). No FTS5 syntax in the
    query can reach the parser. The index keeps no text either (contentless, decision 0016);
    `source_text` gives a passage's checked source, and a hit is only returned when that
    source itself matches the query (tokenized as the index does), so an index that points at
    the wrong passage is refused rather than answered from. A pure-memory archive keeps no text
    to check against (`source_text` None): its hits are the index's (decision 0033).
    """
    if top_k < 1:
        raise BadParameter("top_k", f"must be at least 1 (got {top_k})")
    terms = index_words(query)
    if not terms:
        return []
    try:
        scores = _bm25_scores(conn, terms)
    except (sqlite3.DatabaseError, IndexError) as e:  # IndexError: a truncated FTS5 record
        raise ArchiveError(f"the keyword index is damaged ({e}); run `r3mem verify --repair`") from None
    ranked = sorted(scores, key=lambda pid: (-scores[pid], pid))
    where, args = wanted.where()
    out: list[tuple[PassageInfo, float]] = []
    found: dict[int, str] = {}
    for chunk in mf.chunked(ranked, 200):
        rows = {row[0]: row for row in conn.execute(
            f"SELECT {_PASSAGE_COLUMNS} FROM passages p JOIN documents d ON d.id = p.doc_id {mf.GROUP_JOIN} "
            f"LEFT JOIN memory m ON m.passage_id = p.id WHERE p.id IN ({mf.placeholders(len(chunk))})" + where,
            [*chunk, *args])}
        for pid in chunk:
            row = rows.get(pid)
            if row is None:
                continue
            info = passage_info(row[:9])
            if not wanted.accepts(info, row[9]):
                continue
            if source_text is not None:
                text = source_text(info.id)  # raises when the source fails its checksum
                if text is None:
                    raise ArchiveError(f"the keyword index holds passage {info.id} (document {info.doc_id}), which "
                                       "has no stored source; run `r3mem verify --repair`")
                found[info.id] = text
            out.append((info, scores[pid]))
            if len(out) >= top_k:
                break
        if len(out) >= top_k:
            break
    wrong = sorted(set(found) - matching(" OR ".join(map(quoted, terms)), found))
    if wrong:
        info = next(info for info, _ in out if info.id == wrong[0])
        raise ArchiveError(f"the keyword index entry of passage {info.id} (document {info.doc_id}) "
                           "differs from its stored source; run `r3mem verify --repair`")
    return out


def _bm25_scores(conn: sqlite3.Connection, terms: list[str]) -> dict[int, float]:
    """{passage id: BM25 with each held term counted once} over the passages holding any term."""
    totals = conn.execute(f"SELECT block FROM {mf.FTS_TABLE}_data WHERE id = 1").fetchone()  # FTS5's averages
    if not totals or not totals[0]:
        return {}
    rows, at = mf.fts_varint(totals[0], 0)
    average = max(mf.fts_varint(totals[0], at)[0] / max(rows, 1), 1e-9)
    scores: dict[int, float] = {}
    for term in terms:
        hits = conn.execute(f"SELECT f.rowid, x.sz FROM {mf.FTS_TABLE} f JOIN {mf.FTS_DOCSIZE} x ON x.id = f.rowid "
                            f"WHERE {mf.FTS_TABLE} MATCH ?", (quoted(term),)).fetchall()
        if not hits:
            continue
        idf = max(math.log((max(rows, len(hits)) - len(hits) + 0.5) / (len(hits) + 0.5)), BM25_MIN_IDF)
        for pid, size in hits:
            norm = 1 - BM25_B + BM25_B * mf.fts_varint(size, 0)[0] / average
            scores[pid] = scores.get(pid, 0.0) + idf * (BM25_K1 + 1) / (1 + BM25_K1 * norm)
    return scores


def matching(match: str, texts: dict[int, str]) -> set[int]:
    """The ids among `texts` ({passage id: text}) whose text matches the FTS5 query `match`,
    tokenized exactly as the keyword index does (a private in-memory table of the same kind)."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute(mf.table_sql(mf.FTS_TABLE))
        conn.executemany(f"INSERT INTO {mf.FTS_TABLE} (rowid, text) VALUES (?, ?)", texts.items())
        return {pid for (pid,) in conn.execute(f"SELECT rowid FROM {mf.FTS_TABLE} WHERE {mf.FTS_TABLE} MATCH ?",
                                                (match,))}
    finally:
        conn.close()


def load_key_index(conn: sqlite3.Connection, dims: int, precision: str) -> KeyIndex:
    """Every stored sentence search key (stored in `precision`), as one in-memory index (keyspace.py)."""
    rows = [(pid, doc, key_from_blob(blob, precision, dims).reshape(-1, dims)) for pid, doc, blob in conn.execute(
        "SELECT k.passage_id, p.doc_id, k.keys FROM search_keys k JOIN passages p ON p.id = k.passage_id "
        "ORDER BY k.passage_id")]
    return KeyIndex.build(rows)


def memory_search(conn: sqlite3.Connection, index: KeyIndex, query_key: torch.Tensor, *, top_k: int,
                  wanted: PassageFilter, coarse_documents: int | None = None,
                  key_precision: str = "float16") -> list[tuple[PassageInfo, float]]:
    """Passages ranked by the best cosine between the query's search key and their sentence
    keys (whitened by the archive's key statistics, keyspace.py), best first. With
    `coarse_documents`, documents are ranked by their document-state key first and only the
    passages of the best ones are compared (coarse to fine: the work grows with the documents
    kept, not with the whole archive)."""
    import torch

    if not index.passage_ids.numel():  # nothing ingested with search keys yet
        return []
    query = query_key.float().reshape(-1)
    where, args = wanted.where()
    allowed: set[int] | None = None
    if where or wanted.beyond_sql:
        allowed = {info.id for info, at in passages_where(conn, where, args) if wanted.accepts(info, at)}
    if coarse_documents:
        docs = conn.execute(
            "SELECT k.doc_id, k.key FROM document_keys k JOIN documents d ON d.id = k.doc_id "
            "JOIN passages p ON p.id = d.first_passage AND p.doc_id = d.id WHERE 1=1" + where, args).fetchall()
        if docs:
            dims = query.numel()
            scores = torch.stack([key_from_blob(blob, key_precision, dims) for _, blob in docs]) @ query
            best = {docs[i][0] for i in scores.topk(min(coarse_documents, len(docs))).indices.tolist()}
            inside = {pid for pid, doc in zip(index.passage_ids.tolist(), index.doc_ids) if doc in best}
            allowed = inside if allowed is None else allowed & inside
    scores = index.scores(query)
    if allowed is not None:
        keep = torch.tensor([pid in allowed for pid in index.passage_ids.tolist()], dtype=torch.bool)
        scores = scores.masked_fill(~keep, float("-inf"))
    found = min(top_k, int(torch.isfinite(scores).sum()))
    if not found:
        return []
    top = scores.topk(found)
    ids = [int(index.passage_ids[i]) for i in top.indices.tolist()]
    infos = {info.id: info for info, _ in passages_where(conn, f" AND p.id IN ({mf.placeholders(len(ids))})", ids)}
    ranked = [(infos[pid], float(score)) for pid, score in zip(ids, top.values.tolist()) if pid in infos]
    ranked.sort(key=lambda item: (-item[1], item[0].id))
    return ranked
