"""`r3mem ask`: find the evidence, decide whether the archive says anything about the question,
then answer from it with a citation of the passage the answer came from.

evidence.find_evidence (keyword and memory search, rescored for the question, with the passages
around each hit) -> the decision: the archive "does not mention it" when the best evidence
covers too little of the question (EVIDENCE_FLOOR), or when what it says is said by someone
other than the person the question asks about (ATTRIBUTION_FLOOR; reader.attribution) -> the
answer:
- with the archive's own small model (the default), read rather than written (reader.py): a
  date for "when" questions, from time expressions resolved at ingest; a span of the line that
  answers for other questions; the model itself only decides yes/no questions;
- with the user's own model (`answer_model`, a Hugging Face id or folder) or an OpenAI-compatible
  chat endpoint (`endpoint`, endpoint.py), that model writes the answer from the same passages,
  told to cite them as [doc:passage]; citations of passages it was not shown are dropped.
Both thresholds were chosen on LoCoMo dev conversations 26 and 30 (decision 0025).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Callable

from r3mem_cli.errors import R3memError

from . import reader
from .evidence import find_evidence
from .search import needs_engine

if TYPE_CHECKING:  # torch only where the model runs: most answers are read without it
    import torch

# What every "the archive does not say" answer reads: plain, and what LoCoMo's scoring looks for.
NOT_IN_ARCHIVE = "Not mentioned in the archive."
# Decline when the best passage covers less than this share of the question's content (weighted
# by rarity; evidence.find_evidence) ...
EVIDENCE_FLOOR = 0.2
# ... or when the person the question names says less than this share of what the best line
# about it says (reader.attribution). Chosen on LoCoMo conv-26/30: 37% of adversarial questions
# declined there, 9% of answerable ones; since attribution reads possessives, leaves out the person's own name
# and counts ADDRESSED_CREDIT, 56% and 9% (the same up to 0.8; docs/decisions/0025).
ATTRIBUTION_FLOOR = 0.7
# The memory path always ranks something; alone it counts as evidence only at near-duplicate
# similarity (it is not calibrated to say "relevant" below that).
MEMORY_EVIDENCE = 0.9
# Passages shown to an answering model that writes (the user's own): the best hits' windows.
PROMPT_HITS = 3
SYSTEM = ("You answer questions about the user's own notes and chats, using only the numbered passages. "
          "Reply with just the answer: a few words, no explanation. Cite the passage it comes from as "
          "[doc:passage]. If the passages do not say, reply: Not mentioned in the archive.")
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


def window_passages(found: list[dict]) -> list[dict]:
    """The passages of the best hits' windows, each once, in document order within a window:
    what a writing model is shown, each labelled so it can be cited."""
    seen, out = set(), []
    for r in found[:PROMPT_HITS]:
        for part in r.get("window") or [r]:
            key = (r["doc"], part["passage"])
            if key not in seen:
                seen.add(key)
                out.append({"doc": r["doc"], "passage": part["passage"], "text": part["text"],
                            "location": part.get("location") or {}})
    return out


def ask(archive, engine, question: str, top_k: int = 5, *, answer_model=None, endpoint=None,
        max_new_tokens: int = 96, on_text: Callable[[str], None] | None = None, mode: str = "auto",
        **filters) -> dict:
    """`{"question", "answer", "sources"}`; `on_text` receives the answer as it is written.
    `engine` is the archive's MemoryEngine, or a function that loads it: then it is loaded only
    when a step uses it (the memory path, a pure-memory archive's text, a yes/no question), and
    most questions over kept text are answered without loading the model at all.
    `answer_model` is a (model, tokenizer) pair and `endpoint` an endpoint.ChatEndpoint: either
    writes the answer instead of the reader."""
    if not question.strip():
        raise R3memError("the question is empty")
    load = engine if callable(engine) else (lambda: engine)
    found = find_evidence(archive, question, top_k, engine=load() if needs_engine(archive, mode) else None,
                          mode=mode, **filters)
    if declines(question, found):
        return {"question": question, "answer": NOT_IN_ARCHIVE, "sources": []}
    if endpoint is not None or answer_model is not None:
        shown = window_passages(found)
        messages = prompt_messages(question, shown)
        if endpoint is not None:
            text = endpoint.chat(messages, max_new_tokens)
            if on_text:
                on_text(text)
        else:
            model, tokenizer = answer_model
            text = _generate(model, tokenizer, messages, max_new_tokens, on_text, disable_adapter=False)
        return {"question": question, "answer": finish_answer(text, shown), "sources": found}
    answer = read_answer(load, question, found)
    if on_text:
        on_text(answer)
    return {"question": question, "answer": answer, "sources": found}


def declines(question: str, found: list[dict]) -> bool:
    """Whether the evidence is too weak to answer from (the thresholds above)."""
    if not found:
        return True
    if max(r["scores"].get("evidence", 0.0) for r in found) < EVIDENCE_FLOOR and \
            max(r["scores"].get("memory", 0.0) for r in found) < MEMORY_EVIDENCE:
        return True
    return reader.attribution(question, found) < ATTRIBUTION_FLOOR


def read_answer(load_engine: Callable, question: str, found: list[dict]) -> str:
    """The reader's answer with the archive's own model (module docstring), cited. `load_engine()`
    gives the model; only a yes/no question calls it."""
    ranked = reader.answer_lines(question, found)
    if not ranked:
        return NOT_IN_ARCHIVE
    line = ranked[0][0]
    kind = reader.question_kind(question)
    if kind == "when":
        answer = reader.when_answer(line, question)
    elif kind == "yes/no":
        context = [{"doc": line.doc, "passage": line.passage, "text": line.passage_text, "location": line.location}]
        engine = load_engine()
        yes = _prefers_yes(engine.network.lm, engine.tokenizer, prompt_messages(question, context))
        answer = reader.yes_no_prefix(question) + ("yes" if yes else "no")
        answer = answer[0].upper() + answer[1:]
    else:
        typed = reader.typed_answer(question, ranked)
        line, answer = typed if typed else (line, reader.span_answer(line, question))
    return f"{answer} [{line.doc}:{line.passage}]"


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


def _prefers_yes(model, tokenizer, messages) -> bool:
    """Whether the model, answering, starts with "Yes" rather than "No" (one forward pass)."""
    import contextlib

    import torch

    ids = _prompt_ids(tokenizer, messages).to(next(model.parameters()).device)
    context = model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext()
    with context, torch.inference_mode():
        logits = model(input_ids=ids).logits[0, -1]
    yes, no = (tokenizer(word, add_special_tokens=False)["input_ids"][0] for word in ("Yes", "No"))
    return bool(logits[yes] >= logits[no])


def _prompt_ids(tokenizer, messages) -> torch.Tensor:
    import torch

    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
        return ids if isinstance(ids, torch.Tensor) else ids["input_ids"]  # newer transformers: a BatchEncoding
    plain = "\n\n".join(m["content"] for m in messages) + "\nAnswer:"
    return tokenizer(plain, return_tensors="pt")["input_ids"]


def _generate(model, tokenizer, messages, max_new_tokens, on_text, *, disable_adapter: bool) -> str:
    """Greedy generation with the KV cache, token by token so a terminal sees it appear."""
    import contextlib

    import torch

    ids = _prompt_ids(tokenizer, messages)
    device = next(model.parameters()).device
    ids = ids.to(device)
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    eos = {tokenizer.eos_token_id} | set(configured if isinstance(configured, (list, tuple)) else
                                         [configured] if configured is not None else [])
    context = model.disable_adapter() if disable_adapter and hasattr(model, "disable_adapter") else contextlib.nullcontext()
    out: list[int] = []
    shown = ""
    with context, torch.inference_mode():
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
