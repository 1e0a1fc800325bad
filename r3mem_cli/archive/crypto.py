"""Encryption at rest (`r3mem init --encrypt`): every archive file sealed with AES-256-GCM.

The key comes from the passphrase through Argon2id (memory-hard, RFC 9106's second recommended
setting by default); the salt and cost settings live in the one plaintext file, `encryption.json`,
together with a sealed check value so that a wrong passphrase is told apart from a damaged file.

Every sealed file is MAGIC + a fresh 96-bit random nonce + ciphertext + 16-byte tag. The file's
role in the archive ("manifest", "shard:mem-….safetensors", "adapter:config.json") is bound in as
associated data, so a sealed file cannot be swapped for another one of the same archive without
the swap being detected. Decrypted data only ever lives in memory (see docs/decisions/0013).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from r3mem_cli.durable import atomic_write_bytes
from r3mem_cli.errors import ArchiveError

HEADER_NAME = "encryption.json"
FORMAT = "r3mem-encryption"
MAGIC = b"R3MEM-AESGCM-1\n"
NONCE_BYTES = 12
TAG_BYTES = 16
PASSPHRASE_ENV = "R3MEM_PASSPHRASE"
# AESGCM in `cryptography` takes at most 2**31 - 1 bytes per message; shards and the manifest
# stay far below that (compaction writes shards of ~256 MiB).
MAX_SEALED_BYTES = 2**31 - 1
_CHECK = b"r3mem passphrase check"


class WrongPassphrase(ArchiveError):
    """The passphrase does not open this archive."""


class PassphraseNeeded(ArchiveError):
    """The archive is encrypted and no passphrase was given."""


@dataclass(frozen=True)
class KdfSettings:
    """Argon2id cost. Defaults: RFC 9106 §4 second recommended option (64 MiB, 3 passes, 4 lanes)."""

    memory_cost_kib: int = field(default=64 * 1024, metadata={"help": "memory per derivation, KiB"})
    iterations: int = field(default=3, metadata={"help": "passes over the memory"})
    lanes: int = field(default=4, metadata={"help": "degree of parallelism"})


def derive_key(passphrase: str, salt: bytes, kdf: KdfSettings) -> bytes:
    if not passphrase:
        raise ArchiveError("the passphrase is empty")
    return Argon2id(salt=salt, length=32, iterations=kdf.iterations, lanes=kdf.lanes,
                    memory_cost=kdf.memory_cost_kib).derive(passphrase.encode("utf-8"))


class Vault:
    """The archive's key: seals and opens whole files. Holds no plaintext itself."""

    def __init__(self, key: bytes, root: Path):
        self._aead = AESGCM(key)
        self.root = Path(root)

    # --- creating and unlocking ------------------------------------------------------------

    @classmethod
    def create(cls, folder: Path, passphrase: str, kdf: KdfSettings | None = None) -> "Vault":
        """Write `folder/encryption.json` (fsynced) for a new archive and return its vault."""

        kdf = kdf or KdfSettings()
        salt = secrets.token_bytes(16)
        vault = cls(derive_key(passphrase, salt, kdf), folder)
        header = {"format": FORMAT, "version": 1, "cipher": "AES-256-GCM", "kdf": "argon2id",
                  "kdf_settings": asdict(kdf), "salt": _b64(salt), "check": _b64(vault.seal(_CHECK, "check"))}
        atomic_write_bytes(Path(folder) / HEADER_NAME, (json.dumps(header, indent=2) + "\n").encode())
        return vault

    @classmethod
    def unlock(cls, root: Path, passphrase: str | None = None) -> "Vault":
        """The vault of the archive at `root`; WrongPassphrase if `passphrase` does not fit."""
        root = Path(root)
        path = root / HEADER_NAME
        try:
            header = json.loads(path.read_text(encoding="utf-8"))
            if header.get("format") != FORMAT or header.get("version") != 1:
                raise ValueError(f"format {header.get('format')!r} version {header.get('version')!r}")
            kdf = KdfSettings(**{k: int(v) for k, v in header["kdf_settings"].items()})
            salt, check = _unb64(header["salt"]), _unb64(header["check"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ArchiveError(f"encryption header {path} is damaged or unreadable ({e})") from None
        if passphrase is None:
            passphrase = ask_passphrase(root)
        vault = cls(derive_key(passphrase, salt, kdf), root)
        try:
            if vault._open(check, "check") != _CHECK:
                raise InvalidTag
        except InvalidTag:
            _typed.pop(str(root.absolute()), None)
            raise WrongPassphrase(f"wrong passphrase for the encrypted archive at {root}") from None
        return vault

    # --- sealing -----------------------------------------------------------------------------

    def seal(self, data: bytes, role: str) -> bytes:
        if len(data) > MAX_SEALED_BYTES:
            raise ArchiveError(f"{role}: {len(data)} bytes is more than one encrypted file can hold")
        nonce = secrets.token_bytes(NONCE_BYTES)
        return MAGIC + nonce + self._aead.encrypt(nonce, bytes(data), MAGIC + role.encode())

    def open(self, sealed: bytes, role: str, where: Path | str | None = None) -> bytes:
        """The plaintext of a sealed file; ArchiveError naming the file when it was changed."""
        try:
            return self._open(sealed, role)
        except InvalidTag:
            raise ArchiveError(f"encrypted file {where or role} is damaged or was tampered with "
                               "(authentication failed); run `r3mem verify`") from None

    def _open(self, sealed: bytes, role: str) -> bytes:
        if not sealed.startswith(MAGIC) or len(sealed) < len(MAGIC) + NONCE_BYTES + TAG_BYTES:
            raise InvalidTag
        nonce = sealed[len(MAGIC) : len(MAGIC) + NONCE_BYTES]
        return self._aead.decrypt(nonce, sealed[len(MAGIC) + NONCE_BYTES :], MAGIC + role.encode())

    def read_file(self, path: Path, role: str) -> bytes:
        try:
            sealed = Path(path).read_bytes()
        except OSError as e:
            raise ArchiveError(f"cannot read {path}: {e.strerror or e}") from None
        return self.open(sealed, role, path)

    def write_file(self, path: Path, data: bytes, role: str) -> None:
        """Seal and write atomically (temp name, fsync, rename, directory fsync)."""

        atomic_write_bytes(path, self.seal(data, role))


def is_encrypted(root: Path) -> bool:
    return (Path(root) / HEADER_NAME).is_file()


# --- where passphrases come from -----------------------------------------------------------

# The CLI installs a terminal prompt here; library callers get the environment variable only.
_prompt: Callable[[str, bool], str] | None = None
# Passphrases typed at the prompt in this process, by archive folder: a command that opens the
# archive twice (a reader, then the writer) asks once.
_typed: dict[str, str] = {}


def set_prompt(prompt: Callable[[str, bool], str] | None) -> None:
    """`prompt(message, confirm)` is asked for a passphrase when R3MEM_PASSPHRASE is not set."""
    global _prompt
    _prompt = prompt


def ask_passphrase(root: Path, *, new: bool = False) -> str:
    """R3MEM_PASSPHRASE, else the installed prompt (only on a terminal), else PassphraseNeeded."""
    env = os.environ.get(PASSPHRASE_ENV)
    if env:
        return env
    key = str(Path(root).absolute())
    if not new and key in _typed:
        return _typed[key]
    if _prompt is not None and sys.stdin is not None and sys.stdin.isatty():
        what = "new passphrase for" if new else "passphrase for"
        passphrase = _prompt(f"{what} the archive at {root}", new)
        if not passphrase:
            raise ArchiveError("the passphrase is empty")
        _typed[key] = passphrase
        return passphrase
    verb = "encrypt" if new else "open"
    raise PassphraseNeeded(f"a passphrase is needed to {verb} the archive at {root}: set {PASSPHRASE_ENV} "
                           "or run the command in a terminal")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)
