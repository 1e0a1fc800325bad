"""Real `r3mem` processes that start in a fraction of a second.

The crash, kill and end-to-end tests run `r3mem` in processes of its own: a SIGKILL must hit a
process that owns its files and locks, and a command must run as a user runs it. A fresh
`python -m r3mem_cli` spends 6-7 s importing torch, transformers and peft before it does anything
(docs/decisions/0029), most of those tests' time. Here each process is forked instead from a
server that has imported them once (multiprocessing's forkserver, one per pytest worker): a
separate process with its own pid, files, locks, environment and exit status, killed by a real
signal, that runs `r3mem_cli`'s `__main__` exactly as `python -m r3mem_cli` does.

The server imports only third-party libraries, never r3mem_cli (which reads some settings, such
as R3MEM_FLUSH_PASSAGES, when it is imported); it never runs a torch operation, so no thread pool
exists when it forks. The variables those libraries read when they are imported are fixed for the
server in SERVER_ENV; every other variable is the one given to each process. Tests that check what
a process imports (tests/test_nothing_runs.py, the dry-run test) keep plain subprocesses.
"""

from __future__ import annotations

import io
import multiprocessing
import multiprocessing.forkserver
import os
import runpy
import shutil
import subprocess
import sys
import tempfile

PRELOAD = ["torch", "transformers", "peft", "safetensors.torch", "transformers.models.llama.modeling_llama",
           "transformers.models.auto", "tokenizers", "numpy", "zstandard", "typer", "rich"]
# Read by torch (libgomp), huggingface_hub and transformers when they are imported: the values every
# test process of r3mem uses (the harness environment; what cli/output.py sets before the import).
# OMP_NUM_THREADS: the worker's own where conftest.py set it (cores / workers), else 1.
SERVER_ENV = {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
              "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error",
              "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}

_context = None


def _server():
    global _context
    if _context is None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        saved = {name: os.environ.get(name) for name in SERVER_ENV}
        os.environ.update({**SERVER_ENV, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
        try:
            multiprocessing.forkserver.ensure_running()
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        _context = context
    return _context


def _nothing() -> None:
    pass


def warm() -> None:
    """Start this worker's server and wait until it has imported PRELOAD (about 7 s once), so that
    a test which times a command does not time that."""
    process = _server().Process(target=_nothing)
    process.start()
    process.join()


def _main(args: list[str], env: dict, stdin: str, stdout: str, stderr: str) -> None:
    """The forked process: the given environment and standard streams, then `python -m r3mem_cli ARGS`."""
    os.environ.clear()
    os.environ.update(env)
    for fd, path, flags in ((0, stdin, os.O_RDONLY), (1, stdout, os.O_WRONLY), (2, stderr, os.O_WRONLY)):
        opened = os.open(path, flags)
        os.dup2(opened, fd)
        os.close(opened)
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8")
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace",
                                  line_buffering=True)
    sys.argv = ["r3mem", *args]
    runpy.run_module("r3mem_cli", run_name="__main__", alter_sys=True)


class Process:
    """`subprocess.Popen` for `r3mem ARGS` (not the interpreter's own argv): pid, poll, wait,
    send_signal, kill, returncode, communicate (output captured to files, read at the end)."""

    def __init__(self, args: list[str], env: dict, input: str | None = None, capture: bool = True):
        self.args = list(args)
        self._texts: tuple[str, str] | None = None
        self._folder = tempfile.mkdtemp(prefix="r3mem-process-")
        stdin = os.devnull
        if input is not None:
            stdin = os.path.join(self._folder, "stdin")
            with open(stdin, "w", encoding="utf-8") as f:
                f.write(input)
        self._out = [os.path.join(self._folder, name) if capture else os.devnull for name in ("stdout", "stderr")]
        for path in self._out:
            if capture:
                open(path, "wb").close()
        self._process = _server().Process(target=_main, args=(self.args, dict(env), stdin, *self._out))
        self._process.start()
        self.pid = self._process.pid

    @property
    def returncode(self) -> int | None:
        """Exit status; minus the signal's number for a process a signal ended, as Popen has it."""
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self._process.exitcode

    def send_signal(self, signal: int) -> None:
        if self._process.exitcode is None:
            os.kill(self.pid, signal)

    def kill(self) -> None:
        self._process.kill()

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Wait for the end, then (stdout, stderr) as text ("" where not captured)."""
        self.wait(timeout)
        if self._texts is None:
            self._texts = tuple("" if path == os.devnull else open(path, encoding="utf-8", errors="replace").read()
                                for path in self._out)
            shutil.rmtree(self._folder, ignore_errors=True)
        return self._texts


def run(args: list[str], env: dict, input: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`subprocess.run([...r3mem, *args], capture_output=True, text=True)` in a forked process."""
    process = Process(args, env, input=input)
    try:
        stdout, stderr = process.communicate(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return subprocess.CompletedProcess(["r3mem", *args], process.returncode, stdout, stderr)
