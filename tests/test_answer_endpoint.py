"""`ask --answer-endpoint`: an OpenAI-compatible chat server answers, r3mem keeps retrieval and
citations. The server is real (http.server on a free port, in a thread) and answers with the tiny
test model, so the request and reply cross a socket as they would with Ollama or llama.cpp."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from r3mem_cli.pipelines.ask import NOT_IN_ARCHIVE, citations

from .helpers import as_json, r3mem


class _Server:
    """POST /v1/chat/completions -> the tiny model's greedy reply; records what it was sent."""

    def __init__(self, model_dir: Path, key: str | None = None):
        from r3mem_cli.model.loading import load_base_model

        self.model, self.tokenizer = load_base_model(str(model_dir), "cpu")
        self.key, self.requests = key, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                from r3mem_cli.pipelines.ask import _generate

                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                if self.path != "/v1/chat/completions":
                    return self._reply(404, {"error": "no such route"})
                if outer.key and self.headers.get("Authorization") != f"Bearer {outer.key}":
                    return self._reply(401, {"error": "bad key"})
                text = _generate(outer.model, outer.tokenizer, body["messages"], body["max_tokens"], None,
                                 disable_adapter=False)
                self._reply(200, {"id": "1", "object": "chat.completion", "model": body["model"],
                                  "choices": [{"index": 0, "finish_reason": "stop",
                                               "message": {"role": "assistant", "content": text}}]})

            def _reply(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server(tiny_model_dir):
    running = _Server(tiny_model_dir, key="sekrit")
    yield running
    running.close()


@pytest.fixture()
def archive(tmp_path, tiny_model_dir) -> Path:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "vault.txt").write_text("The spare key hides under the xylophonequartz flowerpot by the garden door.\n")
    root = tmp_path / "archive"
    r3mem(root, "init", "--model", str(tiny_model_dir))
    assert r3mem(root, "ingest", str(notes)).exit_code == 0
    return root


def test_the_endpoint_answers_from_the_retrieved_passages_with_a_citation(archive, server, monkeypatch):
    monkeypatch.setenv("MY_KEY", "sekrit")
    out = as_json(r3mem(archive, "ask", "Where is the xylophonequartz key?", "--mode", "keyword", "--json",
                        "--answer-endpoint", server.url, "--endpoint-model", "tiny", "--endpoint-key-env", "MY_KEY",
                        "--max-new-tokens", "8"))
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sekrit"
    assert request["body"]["model"] == "tiny" and request["body"]["max_tokens"] == 8
    prompt = request["body"]["messages"][-1]["content"]
    assert "xylophonequartz flowerpot" in prompt and "Question: Where is the xylophonequartz key?" in prompt
    assert out["answer"] == NOT_IN_ARCHIVE or citations(out["answer"])
    for doc, passage in citations(out["answer"]):
        assert (doc, passage) == (out["sources"][0]["doc"], out["sources"][0]["passage"])


def test_nothing_is_sent_when_the_archive_does_not_mention_it(archive, server, monkeypatch):
    monkeypatch.setenv("MY_KEY", "sekrit")
    out = as_json(r3mem(archive, "ask", "zebra harmonica quantum?", "--json", "--mode", "keyword",
                        "--answer-endpoint", server.url, "--endpoint-model", "tiny", "--endpoint-key-env", "MY_KEY"))
    assert out["answer"] == NOT_IN_ARCHIVE and server.requests == []


def test_endpoint_errors_are_one_line(archive, server, monkeypatch):
    question = ["ask", "Where is the xylophonequartz key?", "--mode", "keyword"]
    monkeypatch.setenv("MY_KEY", "wrong")
    refused = r3mem(archive, *question, "--answer-endpoint", server.url, "--endpoint-model", "tiny",
                    "--endpoint-key-env", "MY_KEY")
    assert refused.exit_code != 0 and "HTTP 401" in refused.output and len(refused.output.strip().splitlines()) == 1
    unset = r3mem(archive, *question, "--answer-endpoint", server.url, "--endpoint-model", "tiny",
                  "--endpoint-key-env", "NOT_SET_ANYWHERE")
    assert unset.exit_code != 0 and "NOT_SET_ANYWHERE" in unset.output
    server.close()
    gone = r3mem(archive, *question, "--answer-endpoint", server.url, "--endpoint-model", "tiny")
    assert gone.exit_code != 0 and "cannot reach the answer endpoint" in gone.output
    no_model = r3mem(archive, *question, "--answer-endpoint", server.url)
    assert no_model.exit_code != 0 and "--endpoint-model" in no_model.output
