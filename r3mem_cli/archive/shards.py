"""Append-only safetensors shards holding memory tensors.

A shard is written once (temp name, fsync, rename, directory fsync) and never modified; the
manifest only points at a shard after it is durable, so a crash leaves at worst an unreferenced
file that the next writer removes. safetensors is used because loading it never executes code.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import safe_open

from r3mem_cli.durable import TMP_PREFIX, fsync_dir, sha256_fileobj, tmp_path_for

if TYPE_CHECKING:  # torch is imported where tensors are made or read, so commands that need none start fast
    import torch

SHARD_RE = re.compile(r"^mem-[0-9a-f]{12}\.safetensors$")
SHARD_METADATA = {"format": "r3mem-memory-shard", "version": "1"}
# safetensors' dtype names, as safe_open's get_dtype() reports them for unsealed shards
_SAFETENSORS_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "int8": "I8",
                       "uint8": "U8", "int32": "I32", "int64": "I64", "float64": "F64"}


@dataclass(frozen=True)
class ShardRecord:
    """What the manifest stores about a shard file."""

    name: str
    sha256: str
    bytes: int
    tensors: int


@dataclass(frozen=True)
class TensorHeader:
    dtype: str
    shape: tuple[int, ...]


def prepare_tensor(t: torch.Tensor) -> torch.Tensor:
    """A CPU, contiguous tensor with storage of its own (safetensors refuses shared storage,
    and memory tensors are often views into one batch tensor)."""
    return t.detach().to("cpu").contiguous().clone()


class ShardStore:
    """The `shards/` folder of an archive. With a `vault` (an encrypted archive) every shard is
    sealed whole and read back into memory instead of through a memory map."""

    def __init__(self, directory: Path, vault=None):
        self.dir = Path(directory)
        self.vault = vault

    def path(self, name: str) -> Path:
        if not SHARD_RE.match(name):
            raise ValueError(f"not a shard name: {name!r}")
        return self.dir / name

    def new_name(self) -> str:
        while True:
            name = f"mem-{secrets.token_hex(6)}.safetensors"
            if not (self.dir / name).exists():
                return name

    def write(self, tensors: dict[str, torch.Tensor]) -> ShardRecord:
        """Write one new shard durably and return its record. The caller commits the manifest
        only after this returns; if it never does, the file is an unreferenced leftover."""

        from safetensors.torch import save as save_bytes
        from safetensors.torch import save_file

        self.dir.mkdir(parents=True, exist_ok=True)
        name = self.new_name()
        final = self.dir / name
        tmp = tmp_path_for(final)
        try:
            prepared = {k: prepare_tensor(v) for k, v in tensors.items()}
            if self.vault is None:
                save_file(prepared, str(tmp), metadata=SHARD_METADATA)
            else:
                with open(tmp, "wb") as f:
                    f.write(self.vault.seal(save_bytes(prepared, metadata=SHARD_METADATA), f"shard:{name}"))
            with open(tmp, "rb") as f:
                digest, size = sha256_fileobj(f)
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(self.dir)
        return ShardRecord(name=name, sha256=digest, bytes=size, tensors=len(tensors))

    def read(self, name: str, keys: list[str]) -> dict[str, torch.Tensor]:
        """Tensors by key, through a memory map (only the requested tensors are read)."""

        from safetensors.torch import load as load_bytes

        if self.vault is not None:
            everything = load_bytes(self._unsealed(name))
            return {k: everything[k] for k in keys}
        out = {}
        with safe_open(str(self.path(name)), framework="pt", device="cpu") as f:
            for k in keys:
                out[k] = f.get_tensor(k)
        return out

    def header(self, name: str) -> dict[str, TensorHeader]:
        """Dtype and shape of every tensor in a shard, reading only the header."""

        if self.vault is not None:
            from safetensors.torch import load as load_bytes

            return {k: TensorHeader(dtype=_SAFETENSORS_DTYPES.get(str(t.dtype).removeprefix("torch."), str(t.dtype)),
                                    shape=tuple(t.shape))
                    for k, t in load_bytes(self._unsealed(name)).items()}
        out = {}
        with safe_open(str(self.path(name)), framework="pt", device="cpu") as f:
            for k in f.keys():
                sl = f.get_slice(k)
                out[k] = TensorHeader(dtype=str(sl.get_dtype()), shape=tuple(sl.get_shape()))
        return out

    def _unsealed(self, name: str) -> bytes:
        return self.vault.read_file(self.path(name), f"shard:{name}")

    def shard_files(self) -> list[str]:
        """Names of files in the folder that look like shards (referenced or not)."""
        if not self.dir.is_dir():
            return []
        return sorted(p.name for p in self.dir.iterdir() if SHARD_RE.match(p.name))

    def temp_files(self) -> list[Path]:
        if not self.dir.is_dir():
            return []
        return sorted(p for p in self.dir.iterdir() if p.name.startswith(TMP_PREFIX))

    def other_files(self) -> list[Path]:
        if not self.dir.is_dir():
            return []
        return sorted(
            p for p in self.dir.iterdir() if not SHARD_RE.match(p.name) and not p.name.startswith(TMP_PREFIX)
        )

    def remove(self, names: list[str]) -> None:
        for name in names:
            self.path(name).unlink(missing_ok=True)
        if names:
            fsync_dir(self.dir)
