"""Stateful property test: random sequences of ingest / forget / reopen / compact keep the archive
verifiable and equal to a plain in-Python model of what it should hold."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from r3mem_cli.archive import Archive, NewDocument, NewPassage, StoredMemory

DTYPES = [torch.float16, torch.float32, torch.bfloat16]

passage_st = st.tuples(
    st.text(alphabet="abcdefghij klmnö✓\n", min_size=0, max_size=40),  # text
    st.integers(1, 3),  # slots
    st.sampled_from(DTYPES),
    st.integers(0, 2**31 - 1),  # tensor seed
)
# A few content hashes share their first 8 hex chars, to exercise id extension on collision;
# the small seed space makes repeated content (idempotent re-ingest) common too.
doc_st = st.tuples(st.booleans(), st.integers(0, 12), st.lists(passage_st, min_size=0, max_size=3))


def build(doc) -> NewDocument:
    collide, seed, passages = doc
    sha = hashlib.sha256(f"doc-{seed}".encode()).hexdigest()
    if collide:
        sha = "c011151e" + sha[8:]
    ps = []
    for i, (text, slots, dtype, tseed) in enumerate(passages):
        g = torch.Generator().manual_seed(tseed)
        ps.append(NewPassage(i, text, len(text.split()), {"i": i},
                             StoredMemory(torch.randn(slots, 4, generator=g).to(dtype))))
    return NewDocument(f"/src/{seed}", "document", f"doc {seed}", sha, sum(p.tokens for p in ps), {"seed": seed}, ps)


class ArchiveMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="r3mem-state-"))
        self.archive = Archive.create(self.dir / "arc", model="m", memory_config={})
        self.model: dict[str, list[tuple[str, torch.Tensor]]] = {}  # content sha -> passages

    def teardown(self):
        self.archive.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(docs=st.lists(doc_st, min_size=1, max_size=3))
    def ingest(self, docs):
        new = [build(d) for d in docs]
        infos = self.archive.add_documents(new)
        for d, info in zip(new, infos):
            assert info.content_sha256 == d.content_sha256
            self.model.setdefault(d.content_sha256, [(p.text, p.memory.memory) for p in d.passages])

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def forget(self, data):
        sha = data.draw(st.sampled_from(sorted(self.model)))
        doc = self.archive.find_by_hash(sha)
        assert self.archive.forget([doc.id]) == [doc.id]
        del self.model[sha]

    @rule()
    def reopen(self):
        self.archive.close()
        self.archive = Archive.open(self.dir / "arc", write=True)

    @rule()
    def compact(self):
        self.archive.compact()

    @invariant()
    def matches_model(self):
        a = self.archive
        assert a.verify() == []
        docs = a.documents()
        assert {d.content_sha256 for d in docs} == set(self.model)
        ids = [d.id for d in docs]
        assert len(set(ids)) == len(ids)
        for d in docs:
            assert d.id == d.content_sha256[: len(d.id)] and len(d.id) >= 8
            want = self.model[d.content_sha256]
            ps = a.passages(d.id)
            assert d.passages == len(ps) == len(want)
            mem = a.load_memory([p.id for p in ps])
            for p, (text, tensor) in zip(ps, want):
                assert a.source_text(p.id) == text
                got = mem[p.id]
                assert got.dtype == tensor.dtype and torch.equal(got, tensor)
        assert a.stats()["passages"] == sum(len(v) for v in self.model.values())


ArchiveMachine.TestCase.settings = settings(
    max_examples=12,
    stateful_step_count=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestArchiveStateMachine = ArchiveMachine.TestCase
