"""An OpenAI-compatible chat endpoint as `ask`'s answering model (Ollama, llama.cpp's server,
vLLM, LM Studio, or a hosted API): the same retrieval and citations, a bigger model's answer.

POST {url}/chat/completions with {"model", "messages", "max_tokens", "temperature": 0}; the
answer is choices[0].message.content. `url` is the API base as those servers document it
(e.g. http://localhost:11434/v1); a URL that already ends in /chat/completions is used as is.
The key, if any, is read from an environment variable (never a command-line argument, which
other users of the machine can see) and sent as a Bearer token. Standard library only.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlparse

from r3mem_cli.errors import R3memError

TIMEOUT_S = 300.0
MAX_RESPONSE_BYTES = 8 * 1024 * 1024


@dataclass
class ChatEndpoint:
    url: str
    model: str
    api_key_env: str | None = None
    timeout_s: float = TIMEOUT_S

    def __post_init__(self) -> None:
        if urlparse(self.url).scheme not in ("http", "https") or not urlparse(self.url).netloc:
            raise R3memError(f"--answer-endpoint must be an http(s) URL (got {self.url!r})")
        if self.api_key_env and not os.environ.get(self.api_key_env):
            raise R3memError(f"the endpoint key variable ${self.api_key_env} is not set")

    @property
    def completions_url(self) -> str:
        base = self.url.rstrip("/")
        return base if base.endswith("/chat/completions") else base + "/chat/completions"

    def chat(self, messages: list[dict], max_tokens: int) -> str:
        """The endpoint's reply to `messages` (greedy), as text."""
        body = json.dumps({"model": self.model, "messages": messages, "max_tokens": max_tokens,
                           "temperature": 0, "stream": False}).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key_env:
            headers["Authorization"] = f"Bearer {os.environ[self.api_key_env]}"
        request = urllib.request.Request(self.completions_url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise R3memError(f"the answer endpoint refused the request: HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise R3memError(f"cannot reach the answer endpoint {self.completions_url}: {reason}") from exc
        if len(raw) > MAX_RESPONSE_BYTES:
            raise R3memError("the answer endpoint's reply is over 8 MiB")
        try:
            content = json.loads(raw)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise R3memError("the answer endpoint's reply is not an OpenAI chat completion "
                             "(no choices[0].message.content)") from exc
        if not isinstance(content, str):
            raise R3memError("the answer endpoint's reply has no text content")
        return content
