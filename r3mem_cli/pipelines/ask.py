"""`r3mem ask`: retrieve, then answer from the retrieved passages with citations.

search (keyword + memory, fused) -> the passages' text (kept, or rebuilt from memory in a
pure-memory archive) -> the instruct model, told to answer only from them and to cite them as
[doc:passage] -> the answer, streamed on a terminal. When nothing relevant is retrieved, or the
model says the passages do not answer, the answer is exactly NOT_IN_ARCHIVE.

The answering model is the archive's base model with the memory adapter off, or any causal LM
given with `--model` (the archive's own network still does retrieval and reconstruction).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Callable

import torch

from .search import search

NOT_IN_ARCHIVE = "The archive does not say."
# The memory path always ranks something; alone it counts as evidence only at near-duplicate
# similarity (it is not calibrated to say "relevant" below that).
MEMORY_EVIDENCE = 0.9
# Otherwise evidence is a retrieved passage sharing a word with the question other than these (English
# function and question words: "What is the capital of Mongolia?" matches "is" and "the" in any
# archive). Questions in other languages keep every word.
QUESTION_WORDS = frozenset("""
    the and for are was were been being has have had does did doing can could would should will shall
    may might must not you your yours our ours their theirs his her hers its they them this that these
    those what which who whom whose when where why how any all some each much many more most with from
    into onto about after before over under than then there here also just only very too out off
    ever never done get got say said tell told know known
""".split())
# Chosen on a LoCoMo tuning slice (decision 0009): a 135M answerer does best asked for the bare
# answer from three passages; told to "reply exactly: The archive does not say" when unsure, it
# takes that way out even when the answer is in the first passage. "Not in the archive" comes
# from the evidence gate, and from the model when it says so in its own words.
SYSTEM = ("You answer questions about the user's own notes and chats, using only the numbered passages. "
          "Reply with just the answer: a few words, no explanation.")
RELATIVE_CUTOFF = 0.5
_LEAD_IN = re.compile(r"^(?:the )?answer(?: is)?\s*:\s*", re.I)
_CITATION = re.compile(r"\[([0-9a-f]{4,64}):(\d+)\]")
_SPACED_CITATION = re.compile(r"\s*\[([0-9a-f]{4,64}):(\d+)\]")
_DOES_NOT_SAY = re.compile(r"\b(does not say|doesn't say|not (?:mentioned|stated|in the (?:archive|passages))|"
                           r"no information|cannot be determined|do(?:es)? not (?:contain|mention))\b", re.I)


def _label(result: dict) -> str:
    return f"[{result['doc']}:{result['passage']}]"


def _when(location: dict) -> str | None:
    """The day a chat passage was said, as people write it ("8 May 2023"): questions ask "when"."""
    stamp = (location.get("timestamps") or [None])[0] or location.get("first_time") or location.get("start_time")
    try:
        day = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return None
    return f"{day.day} {day:%B %Y}"


def _describe(result: dict) -> str:
    loc = result.get("location") or {}
    bits = [b for b in (_when(loc), ", ".join(loc.get("speakers") or [])) if b]
    return f"{_label(result)}{' (' + '; '.join(bits) + ')' if bits else ''} {result['text'] or ''}".strip()


def prompt_messages(question: str, passages: list[dict]) -> list[dict]:
    context = "\n".join(_describe(p) for p in passages)
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Passages:\n{context}\n\nQuestion: {question}"}]


def ask(archive, engine, question: str, top_k: int = 3, *, answer_model=None, max_new_tokens: int = 96,
        on_text: Callable[[str], None] | None = None, **filters) -> dict:
    """`{"question", "answer", "sources"}`; `on_text` receives the answer as it is generated."""
    if not question.strip():
        from r3mem_cli.errors import R3memError

        raise R3memError("the question is empty")
    found = search(archive, question, top_k, engine=engine, **filters)["results"]
    asked = _words(question) - QUESTION_WORDS
    if not any(asked & _words(r["text"] or "") or r["scores"].get("memory", 0.0) >= MEMORY_EVIDENCE for r in found):
        return {"question": question, "answer": NOT_IN_ARCHIVE, "sources": []}
    found = relevant(found)
    model, tokenizer = answer_model or (engine.network.lm, engine.tokenizer)
    text = _generate(model, tokenizer, prompt_messages(question, found), max_new_tokens, on_text,
                     disable_adapter=answer_model is None)
    return {"question": question, "answer": finish_answer(text, found), "sources": found}


def relevant(found: list[dict], cutoff: float = RELATIVE_CUTOFF) -> list[dict]:
    """The retrieved passages nearly as relevant as the best one: every passage whose score on
    the best passage's path is at least `cutoff` of the best's. A small answerer confuses
    itself with passages about something else (decision 0009)."""
    path = "keyword" if "keyword" in found[0]["scores"] else next(iter(found[0]["scores"]), None)
    best = found[0]["scores"].get(path) if path else None
    if not best or best <= 0:
        return found
    return [r for r in found if r["scores"].get(path, 0.0) >= cutoff * best]


def finish_answer(text: str, sources: list[dict]) -> str:
    """The model's answer, normalised: a "does not say" of any wording becomes NOT_IN_ARCHIVE;
    citations of passages that were not retrieved are dropped; an answer without any citation
    is attributed to the retrieved passage it shares most words with (it was generated from them)."""
    answer = _LEAD_IN.sub("", " ".join(text.split()))
    if not answer or _DOES_NOT_SAY.search(answer):
        return NOT_IN_ARCHIVE
    known = {(s["doc"], s["passage"]) for s in sources}
    answer = _SPACED_CITATION.sub(lambda m: m.group(0) if (m.group(1), int(m.group(2))) in known else "", answer)
    if not _CITATION.search(answer):
        answer = f"{answer} {_label(_source_of(answer, sources))}"
    return answer


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"\w+", text.casefold()) if len(w) > 2}


def _source_of(answer: str, sources: list[dict]) -> dict:
    """The retrieved passage an uncited answer came from: the one sharing most of its words
    (ties: the better ranked), so "Tom" is cited to the passage that names Tom."""
    words = _words(answer)
    return max(sources, key=lambda s: (len(words & _words(s.get("text") or "")), -sources.index(s)))


def citations(answer: str) -> list[tuple[str, int]]:
    return [(m.group(1), int(m.group(2))) for m in _CITATION.finditer(answer)]


@torch.inference_mode()
def _generate(model, tokenizer, messages, max_new_tokens, on_text, *, disable_adapter: bool) -> str:
    """Greedy generation with the KV cache, token by token so a terminal sees it appear."""
    import contextlib

    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
        if not isinstance(ids, torch.Tensor):  # newer transformers return a BatchEncoding
            ids = ids["input_ids"]
    else:
        plain = "\n\n".join(m["content"] for m in messages) + "\nAnswer:"
        ids = tokenizer(plain, return_tensors="pt")["input_ids"]
    device = next(model.parameters()).device
    ids = ids.to(device)
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    eos = {tokenizer.eos_token_id} | set(configured if isinstance(configured, (list, tuple)) else
                                         [configured] if configured is not None else [])
    context = model.disable_adapter() if disable_adapter and hasattr(model, "disable_adapter") else contextlib.nullcontext()
    out: list[int] = []
    shown = ""
    with context:
        cache, inputs = None, ids
        for _ in range(max_new_tokens):
            step = model(input_ids=inputs, past_key_values=cache, use_cache=True)
            cache = step.past_key_values
            token = int(step.logits[0, -1].argmax())
            if token in eos:
                break
            out.append(token)
            inputs = torch.tensor([[token]], device=device)
            if on_text:
                text = tokenizer.decode(out)
                on_text(text[len(shown):])
                shown = text
    return tokenizer.decode(out)
