"""Where archives live and how a new one gets its model and adapter."""

from __future__ import annotations

from dataclasses import replace

import os
import shutil
from pathlib import Path

import platformdirs

from ..archive import Archive, ArchiveSettings
from ..archive.settings import CODE_GROUP_KEPT_TEXT, CODE_GROUP_PURE_MEMORY
from ..errors import ArchiveError, BadParameter
from ..model.loading import DEFAULT_MODEL
from ..model.config import MemoryConfig


def default_archive_path() -> Path:
    """R3MEM_ARCHIVE, else `<user data dir>/r3mem/default`."""
    env = os.environ.get("R3MEM_ARCHIVE")
    return Path(env) if env else Path(platformdirs.user_data_dir("r3mem")) / "default"


def create_archive(root: Path, *, model: str = DEFAULT_MODEL, keep_source: bool = True,
                   adapter: Path | None = None, settings: ArchiveSettings | None = None, encrypt: bool = False,
                   passphrase: str | None = None) -> tuple[Archive, list[str]]:
    """Create an archive opened for writing; returns it with warnings for the user.

    The adapter comes from `adapter` (a folder written by `r3mem train`), else the one shipped
    for the default model, else a fresh untrained one (recall stays poor until trained).
    `settings` say how ingest writes memory (default: ArchiveSettings()). `encrypt` seals every
    archive file (archive/crypto.py).
    """
    from ..model.engine import fresh_adapter, shipped_adapter

    warnings: list[str] = []
    settings = settings or ArchiveSettings()
    if settings.search_keys is None:  # only where the memory path would be the archive's only search
        settings = replace(settings, search_keys=not (keep_source or settings.keyword_index))
    if settings.code_group is None:  # short groups where recall reads against kept text (decision 0032)
        settings = replace(settings, code_group=CODE_GROUP_KEPT_TEXT if keep_source else CODE_GROUP_PURE_MEMORY)
    temporary = None
    if adapter is None:
        adapter = shipped_adapter(model)
    if adapter is None:
        temporary = adapter = fresh_adapter(model, MemoryConfig())
        warnings.append(f"no trained adapter for {model}: memory is untrained, recall will be poor; "
                        "train one with `r3mem train FOLDER --model ...` and pass it to `r3mem init --adapter`")
    try:
        return _create(root, model, keep_source, adapter, settings, encrypt, passphrase), warnings
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


def _create(root: Path, model: str, keep_source: bool, adapter: Path, settings: ArchiveSettings, encrypt: bool,
            passphrase: str | None) -> Archive:
    from ..model.memory import read_adapter_config

    try:
        info = read_adapter_config(adapter)
        memory = MemoryConfig.from_dict(info["memory"])
    except ValueError as exc:
        raise BadParameter("adapter", f"{adapter}: {exc}") from exc
    if info.get("base_model") not in (None, model):
        raise ArchiveError(f"adapter {adapter} was trained for {info['base_model']}, not {model}")
    ratio = settings.compression_ratio
    if ratio is not None and not memory.compression_ratio <= ratio <= memory.max_passage_tokens:
        raise BadParameter("compression_ratio", f"{ratio}: this adapter supports {memory.compression_ratio} "
                                                f"to {memory.max_passage_tokens} passage tokens per memory token")
    # The adapter goes in before the archive is renamed into place: a kill never leaves an
    # archive without one.
    return Archive.create(root, model=model, keep_source=keep_source, memory_config=info["memory"],
                          settings=settings, encrypt=encrypt, passphrase=passphrase, adapter=adapter)


def open_for_ingest(root: Path, *, model: str | None = None, keep_source: bool = True,
                    vault=None) -> tuple[Archive, list[str], bool]:
    """The archive at `root` opened for writing, or a new one (`model`, default SmolLM2) when there
    is none: (archive, warnings for the user, whether it was created). `model` names the model of a
    new archive only; naming another for an existing one is an error. `vault` unlocks an existing
    encrypted archive without asking for its passphrase again."""
    if not Archive.exists(root):
        archive, warnings = create_archive(root, model=model or DEFAULT_MODEL, keep_source=keep_source)
        return archive, warnings, True
    archive = Archive.open(root, write=True, vault=vault)
    if model and model != archive.model:
        archive.close()
        raise ArchiveError(f"the archive at {root} uses {archive.model}; --model applies only to a new archive")
    return archive, [], False
