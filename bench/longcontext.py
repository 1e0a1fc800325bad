"""Long-context language modelling with the carried document memory (the paper's retention claim).

    .venv/bin/python bench/longcontext.py [--documents 5] [--max-passages 40]

For every held-out essay, the document state is folded passage by passage; before passage t+1
the frozen model predicts it from
  - the document state S_t (D memory tokens, the "continue" level),
  - nothing (no memory),
  - the raw preceding text truncated to the same token budget (its last D tokens),
  - the raw preceding passage in full (up to 64 tokens: a stronger, costlier reference).
Every condition scores the same tokens (each passage's tokens after its first), so the
perplexities compare directly. Writes bench/results/longcontext.{json,md,png}.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from common import RESULTS, engine_and_adapter, heldout_documents, machine, pyplot, write_results

from r3mem_cli.model.memory import pad_batch, pad_memory


def _nll_plain(network, context: list[int], passage: list[int]) -> tuple[float, int]:
    """Summed NLL of passage[1:] given raw `context` tokens, frozen model (adapter off)."""
    ids = torch.tensor([context + passage], device=network.device)
    with network.lm.disable_adapter():
        logits = network.lm(input_ids=ids).logits[0].float()
    start = len(context)
    predicted = logits[start : start + len(passage) - 1]
    return float(F.cross_entropy(predicted, ids[0, start + 1:], reduction="sum")), len(passage) - 1


def _nll_state(network, state: torch.Tensor, passage: list[int]) -> tuple[float, int]:
    ids, mask = pad_batch([passage], network.eos_token_id, network.device)
    memory = state.unsqueeze(0).float().to(network.device)
    logits = network.expand_logits(memory, torch.ones(memory.shape[:2], dtype=torch.long, device=network.device),
                                   ids, mask, level="continue", autocast=False)[0].float()
    # logits[j] predicts token j (position 0 is the marker); score tokens 1..n-1 like the others.
    return float(F.cross_entropy(logits[1:len(passage)], ids[0, 1:], reduction="sum")), len(passage) - 1


@torch.inference_mode()
def measure(engine, documents: list[list[list[int]]]) -> dict:
    network = engine.network
    budget = engine.config.document_slots
    totals = {k: [0.0, 0] for k in ("state", "none", "raw_budget", "raw_passage")}
    by_position: dict[int, dict[str, list[float]]] = {}
    for doc in documents:
        carry = None
        for t in range(len(doc) - 1):
            memory, slot_mask = pad_memory(engine.compress([doc[t]]), network.memory_width,
                                           engine.config.memory_slots, engine.device)
            state, carry = network.update_state(memory, slot_mask, carry)
            stored_state = state[0].to(engine.memory_dtype)  # as the archive keeps it
            nxt = doc[t + 1]
            preceding = [tok for p in doc[: t + 1] for tok in p]
            got = {"state": _nll_state(network, stored_state, nxt),
                   "none": _nll_plain(network, [], nxt),
                   "raw_budget": _nll_plain(network, preceding[-budget:], nxt),
                   "raw_passage": _nll_plain(network, doc[t], nxt)}
            slot = by_position.setdefault(t + 1, {k: [0.0, 0] for k in totals})
            for k, (nll, n) in got.items():
                totals[k][0] += nll
                totals[k][1] += n
                slot[k][0] += nll
                slot[k][1] += n
    ppl = {k: math.exp(nll / max(1, n)) for k, (nll, n) in totals.items()}
    curve = {t: {k: math.exp(nll / max(1, n)) for k, (nll, n) in v.items()} for t, v in sorted(by_position.items())}
    return {"perplexity": ppl, "scored_tokens": totals["none"][1], "by_position": curve}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--documents", type=int, default=5)
    parser.add_argument("--max-passages", type=int, default=40, help="passages per document at most")
    parser.add_argument("--adapter", type=Path, default=None)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    engine, adapter, info = engine_and_adapter(args.adapter, args.device)
    documents = [d[: args.max_passages] for d in heldout_documents(engine, info) if len(d) > 1][: args.documents]
    got = measure(engine, documents)
    p = got["perplexity"]
    result = {"machine": machine(engine), "adapter": str(adapter), "documents": len(documents),
              "passages": sum(map(len, documents)), "document_slots": engine.config.document_slots, **got}
    d = engine.config.document_slots
    lines = [
        "# Next-passage perplexity with the carried document memory (held-out essays)", "",
        f"{len(documents)} held-out essays, {result['passages']} passages, {got['scored_tokens']} scored tokens "
        "(each passage's tokens after its first, the same tokens in every condition).", "",
        "| context before passage t+1 | tokens of context | perplexity |", "|---|---|---|",
        f"| none | 0 | {p['none']:.2f} |",
        f"| document memory S_t (folded over all preceding passages) | {d} memory tokens | {p['state']:.2f} |",
        f"| raw preceding text, truncated to the same budget | {d} tokens | {p['raw_budget']:.2f} |",
        f"| raw preceding passage (reference, costlier) | ≤ 64 tokens | {p['raw_passage']:.2f} |",
        "", f"Adapter: `{adapter}`. Machine: {result['machine']['platform']}, device {engine.device}.",
        "Command: `.venv/bin/python bench/longcontext.py`", ""]
    write_results("longcontext", result, "\n".join(lines))
    plot(got)
    print("\n".join(lines))


def plot(got: dict) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    positions = list(got["by_position"])
    names = {"none": "no memory", "state": "document memory", "raw_budget": "raw text, same budget",
             "raw_passage": "raw preceding passage"}
    for key, label in names.items():
        ax.plot(positions, [got["by_position"][t][key] for t in positions], marker=".", label=label)
    ax.set_xlabel("passage index in the essay")
    ax.set_ylabel("next-passage perplexity")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title("carried document memory vs no memory vs raw text")
    fig.tight_layout()
    fig.savefig(RESULTS / "longcontext.png", dpi=100)


if __name__ == "__main__":
    main()
