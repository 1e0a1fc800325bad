"""One mixed folder with every supported format plus broken files, through `r3mem ingest` (issue 4).

Asserts the exact added/errors split, exit code 1, a clean `verify`, that a second run reports
everything unchanged (and the same errors), and that chats keep who said what when in the
passage locations of `show --json`. The fixtures are written here, reusing the readers' tests'
builders (pypdf pages, python-docx, zips, chat exports).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from .helpers import (ANDROID, IOS, as_json, chatgpt_export, make_docx, make_pdf, make_zip, r3mem, slack_files,
                      telegram_chat)

MAX_FILE_SIZE = 200_000
AS_ROOT = os.geteuid() == 0  # chmod 0 does not stop root: the denial is then simulated (see `mixed`)

# name -> number of documents it must add, and whether they are chats
GOOD = {
    "notes.txt": (1, False),
    "garden.md": (1, False),
    "ideas.markdown": (1, False),
    "club.rst": (1, False),
    "trip.html": (1, False),
    "page.htm": (1, False),
    "paper.pdf": (1, False),
    "report.docx": (1, False),
    "records.json": (1, False),
    "journal.jsonl": (1, False),
    "chat.jsonl": (2, True),  # two conversations
    "WhatsApp Chat with Lisbon trip.txt": (1, True),  # Android format
    "WhatsApp Chat - Maya.zip": (1, True),  # iOS format inside the exported zip
    "conversations.json": (2, True),  # ChatGPT
    "result.json": (1, True),  # Telegram Desktop
    "Slack export": (3, True),  # a folder: #general, #garden and a DM
}
# name -> a phrase its one-line error must contain
BAD = {
    "empty.txt": "empty",
    "blank.md": "empty",
    "binary.md": "binary",
    "nul.txt": "binary",
    "broken.json": "malformed JSON at line 3",
    "locked.pdf": "encrypted PDF",
    "cut.pdf": "PDF",
    "fake.pdf": "not a PDF",
    "bad.docx": "malformed zip",
    "big.txt": "limit",
    "loop.txt": "symlink loop",
    "photos": "symlink loop",  # a looping link with no suffix (as a folder link would be) is no "unsupported type"
    "secret.md": "permission denied",
}
DUPLICATE = "zz-copy-of-lisbon-chat.txt"  # the same chat as the WhatsApp .txt: stored once


def build_mixed(folder: Path) -> Path:
    folder.mkdir(parents=True)
    w = lambda name, text: (folder / name).write_text(text, encoding="utf-8")  # noqa: E731
    # documents
    w("notes.txt", "Shopping: milk, eggs, bread.\n\nCall Ada about the lentil soup on Sunday.\n")
    w("garden.md", "# Garden\n\nMaya planted six tomato plants.\n\n## Beans\n\nThe beans came from Tom.\n")
    w("ideas.markdown", "Ideas\n=====\n\nA bench under the apple tree.\n")
    w("club.rst", "Book club\n=========\n\nWe meet on 7 November at Daniel's house.\n")
    w("trip.html", "<html><head><title>Lisbon</title><script>var x=1;</script><style>p{}</style></head><body>"
                   "<nav>home</nav><h1>Tram 28</h1><p>We rode tram 28 up the hill.</p></body></html>")
    w("page.htm", "<html><body><h2>Dinner</h2><p>Dinner was 42 euros.</p></body></html>")
    (folder / "paper.pdf").write_bytes(make_pdf([["Maya planted tomatoes."], ["Beans (green)."]], title="Garden"))
    make_docx(folder / "report.docx")
    w("records.json", json.dumps([{"title": "Soup", "text": "Lentils, 25 minutes."}, {"content": "Untitled note"}]))
    w("journal.jsonl", '{"title": "Mon", "text": "Rain all day."}\n{"text": "Sun at last."}\n')
    # chats
    w("chat.jsonl", "\n".join(json.dumps(r) for r in [
        {"conversation": "trip", "speaker": "Maya", "text": "Tram 28?", "timestamp": "2024-01-02T10:00:00"},
        {"conversation": "trip", "role": "assistant", "content": "Yes, up the hill.", "timestamp": "2024-01-02T10:01:00"},
        {"conversation": "soup", "speaker": "Ada", "text": "Lentils tonight", "timestamp": "2024-01-03T18:00:00"},
    ]) + "\n")
    w("WhatsApp Chat with Lisbon trip.txt", ANDROID)
    w(DUPLICATE, ANDROID)
    (folder / "WhatsApp Chat - Maya.zip").write_bytes(make_zip({"_chat.txt": IOS}))
    w("conversations.json", json.dumps(chatgpt_export()))
    w("result.json", json.dumps(telegram_chat()))
    for name, data in slack_files().items():
        path = folder / "Slack export" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data, encoding="utf-8")
    # broken
    (folder / "empty.txt").write_bytes(b"")
    w("blank.md", " \n\t\n")
    (folder / "binary.md").write_bytes(bytes(range(128, 256)) * 4)
    (folder / "nul.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 10)
    w("broken.json", '[\n{"text": "ok"},\n{"text": oops}\n]')
    (folder / "locked.pdf").write_bytes(make_pdf([["secret text"]], user_password="hunter2"))
    (folder / "cut.pdf").write_bytes(make_pdf([["text"]])[:60])
    (folder / "fake.pdf").write_bytes(b"hello, not a pdf")
    (folder / "bad.docx").write_bytes(b"PK\x03\x04 this is not really a docx")
    w("big.txt", "A long line of ordinary text.\n" * (MAX_FILE_SIZE // 30 + 100))
    (folder / "loop.txt").symlink_to(folder / "loop.txt")
    (folder / "photos").symlink_to("photos")
    w("secret.md", "# Secret\n\nNobody may read this.\n")
    if not AS_ROOT:
        (folder / "secret.md").chmod(0)
    (folder / "picture.png").write_bytes(b"\x89PNG not supported")  # skipped, not an error
    return folder


@pytest.fixture()
def mixed(tmp_path, monkeypatch):
    folder = build_mixed(tmp_path / "mixed")
    if AS_ROOT:  # root reads a chmod-0 file anyway: deny it the way the OS would (EACCES on open)
        real_open = Path.open

        def open_unless_secret(self, *args, **kwargs):
            if self.name == "secret.md":
                raise PermissionError(13, "Permission denied", str(self))
            return real_open(self, *args, **kwargs)

        monkeypatch.setattr(Path, "open", open_unless_secret)
    yield folder
    monkeypatch.undo()
    if not AS_ROOT:
        (folder / "secret.md").chmod(0o600)


def test_mixed_folder_split_verify_and_second_run(mixed, tmp_path, tiny_model_dir):
    archive = tmp_path / "archive"
    assert r3mem(archive, "init", "--model", str(tiny_model_dir)).exit_code == 0
    args = ("ingest", str(mixed), "--max-file-size", str(MAX_FILE_SIZE), "--json")
    result = r3mem(archive, *args)
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)

    # the exact split
    added = Counter(Path(a["source"]).name for a in report["added"])
    assert added == Counter({name: count for name, (count, _) in GOOD.items()})
    errors = {Path(e["source"]).name: e["error"] for e in report["errors"]}
    assert len(errors) == len(report["errors"]) and set(errors) == set(BAD), errors
    for name, phrase in BAD.items():
        assert phrase in errors[name] and "\n" not in errors[name], (name, errors[name])
    assert "over the 200,000-byte limit" in errors["big.txt"]
    assert [Path(s["source"]).name for s in report["skipped"]] == ["picture.png"]
    for item in report["added"]:
        chat = GOOD[Path(item["source"]).name][1]
        assert item["kind"] == ("chat" if chat else "document"), item
        assert item["passages"] >= 1 and item["tokens"] >= 1
    # the same chat under another name is stored once and reported with the id that holds it
    original = next(a for a in report["added"] if a["source"].endswith("Lisbon trip.txt"))
    assert report["unchanged"] == [{"id": original["id"], "source": str((mixed / DUPLICATE).resolve())}]

    verify = r3mem(archive, "verify", "--json")
    assert verify.exit_code == 0 and as_json(verify) == {"ok": True, "problems": [], "notes": []}, verify.output
    listing = as_json(r3mem(archive, "list", "--json"))["documents"]
    assert sorted(d["id"] for d in listing) == sorted(a["id"] for a in report["added"])

    # who said what when
    speakers_by_source: dict[str, set] = {}
    for item in report["added"]:
        shown = as_json(r3mem(archive, "show", item["id"], "--json"))
        assert shown["kind"] == item["kind"] and len(shown["passages"]) == item["passages"]
        locations = [p["location"] for p in shown["passages"]]
        if item["kind"] != "chat":
            assert all("speakers" not in loc for loc in locations)
            continue
        for loc in locations:
            assert {"session", "turns", "speakers", "from"} <= set(loc), loc
            assert loc["speakers"] and all(isinstance(s, str) and s for s in loc["speakers"])
        assert any(loc.get("timestamps") for loc in locations), locations
        name = Path(item["source"]).name
        speakers_by_source.setdefault(name, set()).update(s for loc in locations for s in loc["speakers"])
        if name == "WhatsApp Chat with Lisbon trip.txt":
            assert locations[0]["timestamps"][0] == "2024-01-15T14:05:00"
            assert locations[0]["from"] == {"line": 1}
            assert locations[-1]["timestamps"][-1] == "2024-01-16T09:30:00"
        if name == "WhatsApp Chat - Maya.zip":
            assert locations[0]["from"]["file"] == "_chat.txt"
            assert locations[0]["timestamps"][0] == "2024-03-02T21:15:09"
        if name == "chat.jsonl" and shown["title"].endswith("trip"):
            assert locations[0]["timestamps"] == ["2024-01-02T10:00:00", "2024-01-02T10:01:00"]
            assert locations[0]["speakers"] == ["Maya", "assistant"]
    assert speakers_by_source["WhatsApp Chat with Lisbon trip.txt"] == {"system", "Alice", "Bob"}
    assert speakers_by_source["WhatsApp Chat - Maya.zip"] == {"Maya", "Daniel Ørsted"}
    assert speakers_by_source["conversations.json"] == {"User", "Assistant"}
    assert speakers_by_source["result.json"] == {"system", "Maya", "Daniel", "user9"}
    assert speakers_by_source["Slack export"] == {"system", "Maya Lind", "Daniel Ørsted", "Guest Person",
                                                  "remindbot"}
    assert speakers_by_source["chat.jsonl"] == {"Maya", "assistant", "Ada"}

    # a second run: everything unchanged, the same errors
    again = r3mem(archive, *args)
    assert again.exit_code == 1, again.output
    second = json.loads(again.stdout)
    assert second["added"] == []
    assert second["errors"] == report["errors"]
    assert sorted(u["id"] for u in second["unchanged"]) == sorted(
        [a["id"] for a in report["added"]] + [original["id"]])
    assert all(u["id"] for u in second["unchanged"])
    verify = r3mem(archive, "verify", "--json")
    assert verify.exit_code == 0 and as_json(verify)["ok"] is True, verify.output
    assert len(as_json(r3mem(archive, "list", "--json"))["documents"]) == len(listing)
