"""Options that several commands share, defined once, and the choices Typer validates.

Each option is an `Annotated` alias; a command gives its default with `=`, e.g.
`top_k: TopKOption = 10`. A choice is an Enum built from the library's own list of values;
the library takes plain strings, so commands pass `.value` on.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from ..choices import (COMPUTE_PRECISIONS, DOCUMENT_KINDS, EXACT_METHODS, KEY_PRECISIONS, MEMORY_PRECISIONS,
                       RECALL_LEVELS, SEARCH_MODES)


def _choice(name: str, values) -> type[Enum]:
    return Enum(name, {value: value for value in values}, type=str)


SearchMode = _choice("SearchMode", SEARCH_MODES)
RecallLevel = _choice("RecallLevel", RECALL_LEVELS)
PassageKind = _choice("PassageKind", DOCUMENT_KINDS)
ExactMethod = _choice("ExactMethod", EXACT_METHODS)
MemoryPrecision = _choice("MemoryPrecision", MEMORY_PRECISIONS)
KeyPrecision = _choice("KeyPrecision", KEY_PRECISIONS)
ComputePrecision = _choice("ComputePrecision", COMPUTE_PRECISIONS)


def plain(choice: Enum | None) -> str | None:
    """The plain string the library takes (None stays None)."""
    return None if choice is None else choice.value


JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
DeviceOption = Annotated[str, typer.Option("--device", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N "
                                                             "or mps.")]
PrecisionOption = Annotated[ComputePrecision, typer.Option(
    "--precision", help="Matrix arithmetic: auto (bf16 only where the hardware has it natively, else fp32), fp32 "
                        "or bf16. Exact codes are float64 whatever this says.")]
TopKOption = Annotated[int, typer.Option("--top-k", min=1, help="How many passages to retrieve (search shows them, "
                                                                 "ask answers from them).")]
ModeOption = Annotated[SearchMode, typer.Option("--mode", help="keyword (BM25) | memory (compressed query vs sentence "
                                                               "memory) | hybrid (both, rank-fused) | auto (all the "
                                                               "archive has).")]

# The passage filters of search and ask (Archive.passage_filter)
DocFilter = Annotated[str | None, typer.Option("--doc", help="Only this document (id, unique prefix or source path).")]
KindFilter = Annotated[PassageKind | None, typer.Option("--kind", help="Only 'document' or 'chat' passages.")]
SinceFilter = Annotated[str | None, typer.Option("--since", help="Only passages from this ISO date/time on.")]
UntilFilter = Annotated[str | None, typer.Option("--until", help="Only passages up to this ISO date/time "
                                                                    "(a date: the whole day).")]
SpeakerFilter = Annotated[str | None, typer.Option("--speaker", help="Only chat passages where this speaker talks.")]
