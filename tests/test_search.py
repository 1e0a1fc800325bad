"""`r3mem search`: the keyword path (FTS5 / BM25 over kept sources, filters, forget, migration),
the memory path (compressed query vs sentence memory, coarse to fine) and their rank fusion."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from r3mem_cli.archive import SCHEMA_VERSION, Archive
from r3mem_cli.archive import manifest as mf
from r3mem_cli.archive.search import fts_query

from .helpers import as_json, downgrade, r3mem

NOTES = {
    "garden.md": "# Garden\n\nMaya planted six tomato plants on 20 April.\n\nThe beans came from Tom.\n",
    "club.txt": "The book club meets on 7 November at Daniel's house.\nBring the second book.\n",
    "soup.md": "# Soup\n\nLentil soup simmers for 25 minutes. Add lemon at the end. The garden lemon is best.\n",
    "vault.txt": "The spare key hides under the xylophonequartz flowerpot by the garden door.\n",
}
CHATS = [
    {"conversation": "trip", "speaker": "Maya", "text": "Shall we take tram 28 to the castle?", "timestamp": "2024-01-02T10:00:00Z"},
    {"conversation": "trip", "speaker": "Tom", "text": "Yes, the tram climbs the hill to the castle.", "timestamp": "2024-01-02T10:01:00Z"},
    {"conversation": "bakery", "speaker": "Ada", "text": "The sourdough bread needs a warm kitchen and a garden herb.", "timestamp": "2024-03-05T08:00:00Z"},
    {"conversation": "bakery", "speaker": "Ada", "text": "Bake the bread at dawn.", "timestamp": "2024-03-05T08:05:00Z"},
]


def _write_inputs(tmp_path: Path) -> tuple[Path, Path]:
    notes = tmp_path / "notes"
    notes.mkdir()
    for name, text in NOTES.items():
        (notes / name).write_text(text)
    chats = tmp_path / "chats.jsonl"
    chats.write_text("\n".join(json.dumps(r) for r in CHATS) + "\n")
    return notes, chats


@pytest.fixture()
def archive(tmp_path, tiny_model_dir) -> Path:
    root = tmp_path / "archive"
    # search keys are off by default where sources are kept; these tests exercise the memory path
    assert r3mem(root, "init", "--model", str(tiny_model_dir), "--search-keys", "--json").exit_code == 0
    notes, chats = _write_inputs(tmp_path)
    report = as_json(r3mem(root, "ingest", str(notes), str(chats), "--json"))
    assert report["errors"] == [] and len(report["added"]) == 6, report
    return root


def test_a_default_archive_stores_no_search_keys_and_says_so(tmp_path, tiny_model_dir):
    root = tmp_path / "default"
    assert r3mem(root, "init", "--model", str(tiny_model_dir)).exit_code == 0
    notes, chats = _write_inputs(tmp_path)
    assert as_json(r3mem(root, "ingest", str(notes), str(chats), "--json"))["errors"] == []
    assert as_json(r3mem(root, "stats", "--json"))["search_key_bytes"] == 0
    assert search(root, "garden lemon", "--mode", "auto")["mode"] == "keyword"
    refused = r3mem(root, "search", "garden", "--mode", "memory")
    assert refused.exit_code == 2 and "init --search-keys" in refused.stderr
    from r3mem_cli.archive import Archive
    from r3mem_cli.pipelines.search import needs_engine

    with Archive.open(root) as reader:  # so `search` starts without loading the model here ...
        assert not needs_engine(reader, "auto") and not needs_engine(reader, "keyword")
        assert needs_engine(reader, "auto", rerank=5)


def test_search_loads_the_model_where_the_memory_path_or_the_text_needs_it(archive, tmp_path, tiny_model_dir):
    from r3mem_cli.archive import Archive
    from r3mem_cli.pipelines.search import needs_engine

    with Archive.open(archive) as reader:  # ... and here, where search keys are stored, it does
        assert needs_engine(reader, "auto") and needs_engine(reader, "memory") and needs_engine(reader, "hybrid")
        assert not needs_engine(reader, "keyword")
    assert "memory" in search(archive, "garden lemon", "--mode", "auto")["mode"]
    pure = tmp_path / "pure"  # a pure-memory archive decodes its result text from the code
    assert r3mem(pure, "init", "--model", str(tiny_model_dir), "--no-keep-source", "--no-search-keys").exit_code == 0
    with Archive.open(pure) as reader:
        assert needs_engine(reader, "keyword")


def search(root: Path, *args: str) -> dict:
    """Keyword path unless the test picks a mode: the tiny test model's memory is untrained."""
    mode = () if "--mode" in args else ("--mode", "keyword")
    result = r3mem(root, "search", *args, *mode, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def sources(out: dict) -> list[str]:
    return [Path(r["source"]).name for r in out["results"]]


def test_rare_word_ranks_first_and_json_shape(archive):
    out = search(archive, "where is the xylophonequartz key")
    assert out["query"] == "where is the xylophonequartz key"
    assert sources(out)[0] == "vault.txt"
    first = out["results"][0]
    assert set(first) == {"doc", "passage", "score", "text", "source", "location", "scores"}
    assert out["mode"] == "keyword" and set(first["scores"]) == {"keyword"}
    assert first["passage"] == 0 and "xylophonequartz" in first["text"] and first["score"] > 0
    assert isinstance(first["location"], dict)
    scores = [r["score"] for r in out["results"]]
    assert scores == sorted(scores, reverse=True)
    listed = {d["id"] for d in as_json(r3mem(archive, "list", "--json"))["documents"]}
    assert {r["doc"] for r in out["results"]} <= listed
    # diacritics and case fold: "Lèntil" finds the soup
    assert sources(search(archive, "LÈNTIL"))[0] == "soup.md"


def test_top_k_and_human_output(archive):
    out = search(archive, "garden", "--top-k", "2")
    assert len(out["results"]) == 2
    result = r3mem(archive, "search", "xylophonequartz")
    assert result.exit_code == 0
    assert "vault.txt" in result.stdout and "xylophonequartz flowerpot" in result.stdout
    assert result.stdout.startswith("[")
    assert r3mem(archive, "search", "garden", "--top-k", "0").exit_code == 2


def test_filters(archive):
    everything = search(archive, "garden")
    assert {"garden.md", "soup.md", "vault.txt", "chats.jsonl"} <= set(sources(everything))

    chat_only = search(archive, "garden", "--kind", "chat")
    assert chat_only["results"] and set(sources(chat_only)) == {"chats.jsonl"}
    docs_only = search(archive, "garden", "--kind", "document")
    assert docs_only["results"] and "chats.jsonl" not in sources(docs_only)
    assert r3mem(archive, "search", "garden", "--kind", "email").exit_code == 2

    soup = next(r for r in everything["results"] if r["source"].endswith("soup.md"))
    by_doc = search(archive, "garden", "--doc", soup["doc"][:5])
    assert by_doc["results"] and {r["doc"] for r in by_doc["results"]} == {soup["doc"]}
    missing = r3mem(archive, "search", "garden", "--doc", "ffffffff")
    assert missing.exit_code == 2 and "no document" in missing.stderr

    # chats are dated by their turns: the bakery talk is March 2024, the trip January 2024
    assert sources(search(archive, "bread", "--since", "2024-03-01")) == ["chats.jsonl"]
    assert search(archive, "bread", "--until", "2024-02-01")["results"] == []
    assert search(archive, "tram", "--until", "2024-01-02")["results"]  # a date is the whole day
    assert search(archive, "tram", "--since", "2024-01-03")["results"] == []
    # documents are dated by ingestion (today): nothing of them before 2000, all since then
    assert search(archive, "lentil", "--until", "2000-01-01")["results"] == []
    assert sources(search(archive, "lentil", "--since", "2000-01-01")) == ["soup.md"]
    bad = r3mem(archive, "search", "garden", "--since", "last tuesday")
    assert bad.exit_code == 2 and "ISO date" in bad.stderr

    ada = search(archive, "bread tram", "--speaker", "ada")
    assert ada["results"] and all("Ada" in r["location"]["speakers"] for r in ada["results"])
    tom = search(archive, "bread tram", "--speaker", "TOM")
    assert tom["results"] and all("Tom" in r["location"]["speakers"] for r in tom["results"])
    assert search(archive, "lentil", "--speaker", "Ada")["results"] == []


@pytest.mark.parametrize(
    "query", ['"AND OR * ( NEAR', "NEAR(garden lemon)", "garden AND", '"', "*", "^garden", "col:garden", "  ", "(((("]
)
def test_fts_syntax_in_the_query_is_never_an_error(archive, query):
    out = search(archive, query)
    assert isinstance(out["results"], list)


def test_fts_query_quotes_every_term():
    assert fts_query('"AND OR * ( NEAR') == '"and" OR "or" OR "near"'
    assert fts_query("*** ((") is None
    assert fts_query("Garden garden lemon") == '"garden" OR "lemon"'


def test_forget_removes_passage_from_results_and_index(archive):
    hit = search(archive, "xylophonequartz")["results"][0]
    manifest = archive / "manifest.sqlite"
    assert r3mem(archive, "forget", hit["doc"]).exit_code == 0
    assert search(archive, "xylophonequartz")["results"] == []
    assert sources(search(archive, "garden"))  # the others are still found
    conn = sqlite3.connect(manifest)
    try:
        conn.execute("CREATE VIRTUAL TABLE temp.vocab USING fts5vocab(main, passages_fts, 'row')")
        assert conn.execute("SELECT COUNT(*) FROM temp.vocab WHERE term = 'xylophonequartz'").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM temp.vocab WHERE term = 'flowerpot'").fetchone()[0] == 0
    finally:
        conn.close()
    for f in archive.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert b"xylophonequartz" not in data and b"flowerpot" not in data, f
    assert as_json(r3mem(archive, "verify", "--json"))["ok"] is True


VAULT = NOTES["vault.txt"].strip()


def test_memory_path_finds_a_sentence_by_its_memory(archive):
    """A query that is a stored sentence compresses to (nearly) the same sentence memory, so the
    memory path ranks its passage first, even on an untrained model."""
    out = search(archive, VAULT, "--mode", "memory")
    assert out["mode"] == "memory"
    assert sources(out)[0] == "vault.txt"
    assert out["results"][0]["score"] > 0.99 > out["results"][1]["score"]
    fused = search(archive, VAULT, "--mode", "hybrid", "--top-k", "3")
    assert fused["mode"] == "keyword+memory" and sources(fused)[0] == "vault.txt"
    assert set(fused["results"][0]["scores"]) == {"keyword", "memory"}
    # Filters hold on the memory path too.
    chats_only = search(archive, VAULT, "--mode", "memory", "--kind", "chat")
    assert chats_only["results"] and all(r["location"].get("speakers") for r in chats_only["results"])
    # Rerank: the best candidates reordered by the backward model's likelihood of the query.
    reranked = search(archive, VAULT, "--mode", "hybrid", "--rerank", "4", "--top-k", "3")
    ranks = [r["scores"]["rerank"] for r in reranked["results"]]
    assert len(ranks) == 3 and ranks == sorted(ranks, reverse=True) and all(r < 0 for r in ranks)
    # Coarse to fine: only the passages of the best-matching document are compared.
    coarse = search(archive, VAULT, "--mode", "memory", "--coarse", "1")
    assert len({r["doc"] for r in coarse["results"]}) == 1


def test_pure_memory_archive_searches_its_keyword_index_and_rebuilds_text(tmp_path, tiny_model_dir):
    """Decision 0033: a pure-memory archive indexes its words (no copy of the text) and stores no search
    keys by default; its results are decoded from memory + residual, exactly."""
    root = tmp_path / "pure"
    assert r3mem(root, "init", "--model", str(tiny_model_dir), "--no-keep-source", "--exact", "residual").exit_code == 0
    notes, _ = _write_inputs(tmp_path)
    assert r3mem(root, "ingest", str(notes)).exit_code == 0
    with Archive.open(root) as a:
        assert a.settings.keyword_index and not a.settings.search_keys and not a.has_search_keys()
        indexed = {pid for (pid,) in a.conn.execute("SELECT id FROM passages_fts_docsize")}
        assert indexed == {p.id for p in a.all_passages()} and a.verify() == []
    out = search(root, VAULT, "--mode", "auto")
    assert out["mode"] == "keyword" and sources(out)[0] == "vault.txt"
    assert out["results"][0]["text"] == VAULT  # rebuilt from memory + residual, exactly
    assert search(root, "garden", "--mode", "keyword")["results"]
    result = r3mem(root, "search", "garden", "--mode", "memory", "--json")
    assert result.exit_code == 2 and "stores no search keys" in result.stderr and result.stdout == ""


def test_pure_memory_archive_without_keyword_index_searches_memory(tmp_path, tiny_model_dir):
    root = tmp_path / "pure"
    assert r3mem(root, "init", "--model", str(tiny_model_dir), "--no-keep-source", "--no-keyword-index",
                 "--exact", "residual").exit_code == 0
    notes, _ = _write_inputs(tmp_path)
    assert r3mem(root, "ingest", str(notes)).exit_code == 0
    result = r3mem(root, "search", "garden", "--mode", "keyword", "--json")
    assert result.exit_code == 2
    assert "this pure-memory archive has no keyword index" in result.stderr
    assert result.stdout == ""
    with Archive.open(root) as a:
        assert a.settings.search_keys and a.conn.execute("SELECT COUNT(*) FROM passages_fts").fetchone()[0] == 0
    out = search(root, VAULT, "--mode", "auto")
    assert out["mode"] == "memory" and sources(out)[0] == "vault.txt"
    assert out["results"][0]["text"] == VAULT  # rebuilt from memory + residual, exactly


def test_archive_from_previous_schema_gets_its_index_on_open(tmp_path, tiny_model_dir):
    archive = tmp_path / "old"  # as a release before exact codes wrote it: memory stored, no codes
    assert r3mem(archive, "init", "--model", str(tiny_model_dir), "--exact", "none", "--store-memory").exit_code == 0
    notes, chats = _write_inputs(tmp_path)
    assert as_json(r3mem(archive, "ingest", str(notes), str(chats), "--json"))["errors"] == []
    want = search(archive, "garden lemon")
    downgrade(archive / "manifest.sqlite", to_version=2)
    with Archive.open(archive) as a:  # a reader upgrades under a short writer lock
        assert a.schema_version == SCHEMA_VERSION == 13
        n = a.conn.execute("SELECT COUNT(*) FROM passages_fts").fetchone()[0]
        assert n == a.conn.execute("SELECT COUNT(*) FROM sources").fetchone()[0] > 0
        assert a.verify() == []
    assert search(archive, "garden lemon") == want


def test_archive_with_the_previous_keyword_index_is_converted(archive):
    """An archive whose keyword index is the regular FTS5 table of schema 5 (a second copy of every
    kept text) gets the contentless one without positions (0006, 0008) when opened: the same
    passages match every query, and every search answers as before."""
    queries = ("garden lemon", "tram castle", "book club November", "xylophonequartz")
    want = [search(archive, q) for q in queries]
    filtered = search(archive, "garden", "--kind", "chat")
    downgrade(archive / "manifest.sqlite", to_version=5)
    assert _ranked(archive, "SELECT COUNT(*) FROM passages_fts_content")[0][0] > 0  # the old copy
    old = [{pid for pid, _ in _ranked(archive, RANKED, fts_query(q))} for q in queries]
    assert all(old)
    with Archive.open(archive) as a:  # a reader converts it, under a short writer lock
        assert a.schema_version == SCHEMA_VERSION
        tables = {n for (n,) in a.conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'passages_fts%'")}
        assert tables == {mf.FTS_TABLE} | {f"{mf.FTS_TABLE}_{s}" for s in mf.FTS_SHADOWS}
        n = a.conn.execute(f"SELECT COUNT(*) FROM {mf.FTS_DOCSIZE}").fetchone()[0]
        assert n == a.conn.execute("SELECT COUNT(*) FROM sources").fetchone()[0] > 0
        assert a.verify() == []
    assert [{pid for pid, _ in _ranked(archive, RANKED, fts_query(q))} for q in queries] == old
    assert [search(archive, q) for q in queries] == want
    assert search(archive, "garden", "--kind", "chat") == filtered
    with pytest.raises(sqlite3.OperationalError, match="phrase queries are not supported"):
        _ranked(archive, RANKED, '"tomato plants"')  # detail=none: which passages, not where


RANKED = ("SELECT rowid, bm25(passages_fts) FROM passages_fts WHERE passages_fts MATCH ? "
          "ORDER BY bm25(passages_fts), rowid")


def _ranked(root: Path, sql: str, *args) -> list[tuple]:
    conn = sqlite3.connect(root / "manifest.sqlite")
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def test_migration_function_directly():
    conn = sqlite3.connect(":memory:", isolation_level=None)
    mf.migrate(conn, upto=2)
    import zstandard

    conn.execute("INSERT INTO documents VALUES ('abcd1234', 's', 'document', 't', ?, 1, 1, '{}', 'x')", ("0" * 64,))
    raw = "Crème brûlée".encode()
    conn.execute("INSERT INTO passages (doc_id, idx, text_sha256, tokens, location) VALUES ('abcd1234', 0, ?, 1, '{}')",
                 (hashlib.sha256(raw).hexdigest(),))
    conn.execute("INSERT INTO sources VALUES (1, ?, ?)", (zstandard.ZstdCompressor().compress(raw), len(raw)))
    assert mf.migrate(conn) == mf.SCHEMA_VERSION
    assert conn.execute("SELECT rowid FROM passages_fts WHERE passages_fts MATCH '\"creme\"'").fetchall() == [(1,)]


def test_key_whitening_finds_content_that_a_shared_component_hides():
    """Keys that share one large component and vary most along a few 'style' directions: raw
    cosine ranks by style, the whitened comparison by content (what the memory path needs)."""
    import torch

    from r3mem_cli.archive.keyspace import MIN_KEYS, KeyWhitening

    g = torch.Generator().manual_seed(0)
    dims, n = 64, 2 * MIN_KEYS
    common = torch.randn(dims, generator=g) * 4
    style_directions = torch.linalg.qr(torch.randn(dims, 3, generator=g))[0].T  # [3, dims]
    content = torch.randn(n, dims, generator=g) * 0.3
    keys = common + torch.randn(n, 3, generator=g) * 3 @ style_directions + content
    query = common + torch.randn(1, 3, generator=g) * 3 @ style_directions + content[7]  # item 7, another style
    raw = torch.nn.functional.normalize(keys, dim=-1) @ torch.nn.functional.normalize(query[0], dim=0)
    whitening = KeyWhitening.fit(keys)
    whitened = whitening(keys) @ whitening(query)[0]
    assert int(whitened.argmax()) == 7
    assert int(raw.argmax()) != 7
    assert torch.allclose(whitening(keys).norm(dim=-1), torch.ones(n))
    assert KeyWhitening.fit(keys[: MIN_KEYS - 1]) is None  # too few keys: keep the raw cosine


def test_memory_index_follows_forget_and_ingest_in_an_open_archive(archive, tmp_path):
    """The in-memory key index of a long-lived reader is rebuilt when another process changes
    the stored keys: a forgotten document is never found, a new one is."""
    from r3mem_cli.archive import Archive
    from r3mem_cli.model.engine import engine_for
    from r3mem_cli.pipelines.search import search as run_search

    with Archive.open(archive) as reader:
        engine = engine_for(reader.model, reader.adapter_dir, "cpu")
        first = run_search(reader, VAULT, 3, engine=engine, mode="memory")["results"]
        assert first[0]["source"].endswith("vault.txt")
        with Archive.open(archive, write=True) as writer:
            writer.forget([first[0]["doc"]])
        after = run_search(reader, VAULT, 3, engine=engine, mode="memory")["results"]
        assert first[0]["doc"] not in {r["doc"] for r in after}
        note = tmp_path / "again.txt"
        note.write_text(VAULT + "\n")
        assert r3mem(archive, "ingest", str(note)).exit_code == 0
        again = run_search(reader, VAULT, 3, engine=engine, mode="memory")["results"]
        assert again[0]["source"].endswith("again.txt") and again[0]["score"] > 0.99


def test_default_mode_ranks_keyword_hits_first_and_fills_in_from_memory(archive):
    """auto: every passage the keyword path found comes before those only memory found, and a
    query with no word in the archive still gets passages from memory."""
    out = search(archive, "xylophonequartz flowerpot", "--mode", "auto", "--top-k", "6")
    assert out["mode"] == "keyword+memory"
    paths = [set(r["scores"]) for r in out["results"]]
    keyword_hits = [i for i, p in enumerate(paths) if "keyword" in p]
    assert keyword_hits and keyword_hits == list(range(len(keyword_hits)))
    assert len(keyword_hits) < len(paths)  # memory filled the rest
    scores = [r["score"] for r in out["results"]]
    assert scores == sorted(scores, reverse=True)
    unseen = search(archive, "qwzxv plmokn", "--mode", "auto")
    assert unseen["results"] and all(set(r["scores"]) == {"memory"} for r in unseen["results"])


def test_ask_keeps_only_passages_nearly_as_relevant_as_the_best():
    from r3mem_cli.pipelines.ask import relevant

    found = [{"scores": {"keyword": 5.0, "memory": 0.9}}, {"scores": {"keyword": 3.0}},
             {"scores": {"keyword": 1.0}}, {"scores": {"memory": 0.99}}]
    assert relevant(found, 0.5) == found[:2]
    memory_only = [{"scores": {"memory": 0.8}}, {"scores": {"memory": 0.3}}]
    assert relevant(memory_only, 0.5) == memory_only[:1]
