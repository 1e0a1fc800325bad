"""The named choices the library accepts and the command line offers, in one place with no heavy
imports, so the CLI can validate them without loading the model stack."""

from __future__ import annotations

SEARCH_MODES = ("auto", "hybrid", "keyword", "memory")  # pipelines/search.py
RECALL_LEVELS = ("passage", "sentence", "document")  # pipelines/recall.py
DOCUMENT_KINDS = ("document", "chat")  # what a reader makes; search filters by it
EXACT_METHODS = ("code", "none", "refine", "residual")  # archive/settings.py
MEMORY_PRECISIONS = ("float16", "int8")  # archive/precision.py
KEY_PRECISIONS = ("float16", "int8")  # archive/records.py: how search keys are stored
COMPUTE_PRECISIONS = ("auto", "fp32", "bf16")  # model/memory.py resolve_precision
