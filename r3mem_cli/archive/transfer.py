"""Export an archive as one portable file, and import such a file safely.

The export is a tar stream (optionally zstd-compressed) whose FIRST member is MANIFEST.json
(format version + sha256 and size of every other member), followed by a consistent SQLite
snapshot (backup API, not a copy of a live WAL database), the shards and the adapter files.

An export file is untrusted input on import: member names are matched against a short allow-list,
only regular files are accepted, sizes are bounded and declared up front, every byte is checked
against MANIFEST.json, members are written by our own code (never `tar.extract`), the SQLite
schema must equal what our migrations produce, and the unpacked archive must pass verify_archive() —
all in a temp folder beside the target, which is renamed into place only at the very end.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import sqlite3
import tarfile
import tempfile
import time
from pathlib import Path, PurePosixPath

import zstandard

from r3mem_cli.durable import crashpoint, fsync_dir, sha256_file, sha256_fileobj
from r3mem_cli.errors import ArchiveError, R3memError

from . import manifest as mf
from .archive import Archive
from .crypto import HEADER_NAME, Vault, WrongPassphrase
from .lock import active_writer_pid
from .manifest import MANIFEST_NAME, SEALED_MANIFEST_NAME
from .shards import SHARD_RE
from .verify import verify_archive

FORMAT = "r3mem-archive-export"
FORMAT_VERSION = 1
MANIFEST_MEMBER = "MANIFEST.json"
MAX_MANIFEST_BYTES = 16 << 20
MAX_MEMBER_BYTES = 1 << 40
MAX_MEMBERS = 1_000_000
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_ADAPTER_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$")


def allowed_member(name: str) -> bool:
    """The only names an export may contain (besides MANIFEST.json)."""
    if not isinstance(name, str) or "\\" in name or "\x00" in name:
        return False
    p = PurePosixPath(name)
    if p.is_absolute() or str(p) != name:
        return False
    parts = p.parts
    if name in (MANIFEST_NAME, SEALED_MANIFEST_NAME, HEADER_NAME):
        return True
    if len(parts) == 2 and parts[0] == "shards":
        return bool(SHARD_RE.match(parts[1]))
    if 2 <= len(parts) <= 5 and parts[0] == "adapter":
        return all(_ADAPTER_PART.match(x) for x in parts[1:])
    return False


# --- export -------------------------------------------------------------------------------


def _snapshot(archive, dest: Path):
    """Consistent copy of the manifest plus the files it references, opened before anything
    can delete them (an open file stays readable on POSIX even after a compaction unlinks it).
    An encrypted archive's snapshot is its in-memory manifest, sealed; its encryption.json
    travels with it, and every other member is already sealed on disk."""
    dest.unlink(missing_ok=True)
    if archive.encrypted:
        out = archive.conn  # the reader's in-memory snapshot: one committed state
        archive.vault.write_file(dest, out.serialize(), "manifest")
    else:
        out = sqlite3.connect(str(dest), isolation_level=None)
    try:
        if not archive.encrypted:
            archive.conn.backup(out)
            out.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        shards = out.execute("SELECT name, sha256, bytes FROM shards ORDER BY name").fetchall()
        files = out.execute("SELECT name, sha256, bytes FROM files ORDER BY name").fetchall()
        counts = {
            "documents": out.execute("SELECT COUNT(*) FROM documents").fetchone()[0],
            "passages": out.execute("SELECT COUNT(*) FROM passages").fetchone()[0],
        }
    finally:
        if not archive.encrypted:
            out.close()
    if archive.encrypted:
        header = archive.root / HEADER_NAME
        files.append((HEADER_NAME, *sha256_file(header)))
    members = []
    try:
        for name, sha, size in shards:
            members.append((f"shards/{name}", open(archive.shards.path(name), "rb"), sha, size))
        for name, sha, size in files:
            if not allowed_member(name):
                raise ArchiveError(f"archive records a file with a disallowed name {name!r}; run `r3mem verify`")
            members.append((name, open(archive.root / name, "rb"), sha, size))
    except BaseException:
        for _, f, _, _ in members:
            f.close()
        raise
    return members, counts


def numeric_settings(archive) -> dict:
    """Where the archive's exact codes were made and what they depend on, recorded in an export so
    a failed decode elsewhere can be traced (docs/decisions/0017): the coders' tags (model
    fingerprint, grid, guard) and the exporting machine's numerics."""
    import platform

    import torch

    coders = [json.loads(t) if t.startswith("{") else t for (t,) in
              archive.conn.execute("SELECT DISTINCT c.tag FROM residuals r JOIN coders c ON c.id = r.coder "
                                   "ORDER BY c.tag")]
    return {"coders": coders, "torch": torch.__version__, "machine": platform.machine(),
            "processor": platform.processor(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(), "settings": archive.settings.to_dict()}


def export_archive(archive, file, *, compress: bool | None = None) -> dict:
    """Write `archive` to `file` (a path, written atomically, or a binary file object)."""
    if archive.closed:
        raise ArchiveError(f"archive {archive.root} is closed")
    is_path = isinstance(file, (str, os.PathLike))
    if compress is None:
        compress = is_path and str(file).endswith((".zst", ".zstd"))
    target = Path(file).expanduser().absolute() if is_path else None
    tmpdir_parent = target.parent if target else None
    if target:
        target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".r3mem-export-", dir=tmpdir_parent) as tmp:
        snap_name = SEALED_MANIFEST_NAME if archive.encrypted else MANIFEST_NAME
        snap = Path(tmp) / snap_name
        for attempt in range(3):
            try:
                members, counts = _snapshot(archive, snap)
            except FileNotFoundError:
                if attempt == 2:
                    raise ArchiveError(f"a file of archive {archive.root} is missing; run `r3mem verify`") from None
                time.sleep(0.2)
                continue
            bad = None
            for name, f, sha, size in members:
                have = sha256_fileobj(f)
                f.seek(0)
                if have != (sha, size):
                    bad = name
                    break
            if bad is None:
                break
            for _, f, _, _ in members:
                f.close()
            if attempt == 2 or not active_writer_pid(archive.root / "lock"):
                raise ArchiveError(f"{archive.root / bad} does not match its recorded checksum; run `r3mem verify`")
            time.sleep(0.2)
        try:
            with open(snap, "rb") as f:
                snap_sha, snap_size = sha256_fileobj(f)
            entries = {snap_name: {"sha256": snap_sha, "bytes": snap_size}}
            for name, _f, sha, size in members:
                entries[name] = {"sha256": sha, "bytes": size}
            from r3mem_cli import __version__

            head = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "schema_version": archive.schema_version,
                "r3mem_version": __version__,
                "exported_at": mf.utc_now(),
                "model": archive.model,
                "documents": counts["documents"],
                "passages": counts["passages"],
                "encrypted": archive.encrypted,
                "numerics": numeric_settings(archive),
                "members": entries,
            }
            head_bytes = json.dumps(head, indent=1, sort_keys=True).encode()
            if target:
                out_tmp = target.with_name(f".{target.name}.tmp-{secrets.token_hex(4)}")
                raw = open(out_tmp, "wb")
            else:
                out_tmp, raw = None, file
            try:
                counter = _CountingWriter(raw)
                zw = zstandard.ZstdCompressor(level=10).stream_writer(counter, closefd=False) if compress else None
                with tarfile.open(fileobj=zw or counter, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                    _add(tar, MANIFEST_MEMBER, io.BytesIO(head_bytes), len(head_bytes))
                    with open(snap, "rb") as f:
                        _add(tar, snap_name, f, snap_size)
                    for name, f, _sha, size in members:
                        _add(tar, name, f, size)
                if zw is not None:
                    zw.close()
                if target:
                    raw.flush()
                    os.fsync(raw.fileno())
                    raw.close()
                    os.replace(out_tmp, target)
                    fsync_dir(target.parent)
            except BaseException:
                if target:
                    raw.close()
                    out_tmp.unlink(missing_ok=True)
                raise
        finally:
            for _, f, _, _ in members:
                f.close()
    return {
        "file": str(target) if target else None,
        "bytes": counter.count,
        "compressed": bool(compress),
        "members": len(entries) + 1,
        "documents": counts["documents"],
        "passages": counts["passages"],
        "format_version": FORMAT_VERSION,
    }


class _CountingWriter(io.RawIOBase):
    def __init__(self, raw):
        self.raw = raw
        self.count = 0

    def writable(self):
        return True

    def write(self, b):
        n = self.raw.write(b)
        n = len(b) if n is None else n
        self.count += n
        return n


def _add(tar: tarfile.TarFile, name: str, f, size: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = int(time.time())
    info.type = tarfile.REGTYPE
    tar.addfile(info, f)


# --- import -------------------------------------------------------------------------------


def _bad(file, why: str) -> ArchiveError:
    return ArchiveError(f"{file} is not a valid r3mem export: {why}")


def _open_stream(file):
    """A readable binary stream, transparently zstd-decompressed (detected by magic bytes)."""
    raw = open(Path(file).expanduser(), "rb") if isinstance(file, (str, os.PathLike)) else file
    buf = raw if hasattr(raw, "peek") else io.BufferedReader(raw)
    magic = buf.peek(4)[:4]
    stream = zstandard.ZstdDecompressor().stream_reader(buf, closefd=False) if magic == ZSTD_MAGIC else buf
    return raw, stream


def _check_target(root: Path) -> None:
    if Archive.exists(root):
        with Archive.open(root) as a:
            if a.conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0]:
                raise ArchiveError(f"archive at {root} is not empty; import into a new folder or `r3mem forget` first")
    elif root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ArchiveError(f"{root} exists and is not an empty folder or archive; import into a new folder")


def import_archive(file, root) -> Archive:
    """Unpack export `file` into a new archive at `root` (see the module docstring); returns it
    opened read-only."""
    return Archive.open(_unpack(file, root))


def _unpack(file, root) -> Path:
    root = Path(root).expanduser().absolute()
    label = file if isinstance(file, (str, os.PathLike)) else "export file"
    _sweep_stale(root)
    _check_target(root)
    created_dirs: list[Path] = []
    tmp: Path | None = None
    held: int | None = None
    raw = None
    try:
        try:
            raw, stream = _open_stream(file)
        except OSError as e:
            raise ArchiveError(f"cannot read {label}: {e.strerror or e}") from None
        try:
            tar = tarfile.open(fileobj=stream, mode="r|")
        except (tarfile.TarError, zstandard.ZstdError, OSError, EOFError) as e:
            raise _bad(label, f"not a tar file ({e})") from None
        try:
            first = tar.next()
            if first is None or first.name != MANIFEST_MEMBER or not first.isreg():
                raise _bad(label, f"the first member must be {MANIFEST_MEMBER}")
            if first.size > MAX_MANIFEST_BYTES:
                raise _bad(label, f"{MANIFEST_MEMBER} is too large")
            head = _parse_head(label, tar.extractfile(first).read())
            declared = head["members"]
            total = sum(m["bytes"] for m in declared.values())
            # Nothing is written until the header checks out; then only into a temp folder.
            parent = root.parent
            missing = []
            while not parent.exists():
                missing.append(parent)
                parent = parent.parent
            free = shutil.disk_usage(parent).free
            if total > free:
                raise ArchiveError(f"{label} needs {total} bytes but only {free} are free under {parent}")
            for d in reversed(missing):
                d.mkdir()
                created_dirs.append(d)
            tmp = root.parent / f".{root.name}.import-{secrets.token_hex(4)}"
            tmp.mkdir()
            held = _hold(tmp)  # tells _sweep_stale of other imports that this one is alive
            seen: set[str] = set()
            while (m := tar.next()) is not None:
                if not allowed_member(m.name) or m.name not in declared:
                    raise _bad(label, f"unexpected member {m.name!r}")
                if m.name in seen:
                    raise _bad(label, f"member {m.name!r} appears twice")
                if not m.isreg() or m.issparse():
                    raise _bad(label, f"member {m.name!r} is not a regular file")
                want = declared[m.name]
                if m.size != want["bytes"]:
                    raise _bad(label, f"member {m.name!r} has {m.size} bytes, {MANIFEST_MEMBER} says {want['bytes']}")
                seen.add(m.name)
                dest = tmp / m.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                h = hashlib.sha256()
                src = tar.extractfile(m)
                with open(dest, "xb") as out:
                    while chunk := src.read(1 << 20):
                        h.update(chunk)
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                if h.hexdigest() != want["sha256"]:
                    raise _bad(label, f"member {m.name!r} does not match its checksum (damaged or tampered)")
        except (tarfile.TarError, zstandard.ZstdError, EOFError) as e:
            raise _bad(label, f"damaged tar stream ({e})") from None
        finally:
            tar.close()
        lost = sorted(set(declared) - seen)
        if lost:
            raise _bad(label, f"members listed in {MANIFEST_MEMBER} are missing: {', '.join(lost[:5])}")
        (tmp / "shards").mkdir(exist_ok=True)
        (tmp / "adapter").mkdir(exist_ok=True)
        for d in (tmp / "adapter", tmp / "shards", tmp):
            fsync_dir(d)
        crashpoint("import.unpacked")
        vault = None
        if SEALED_MANIFEST_NAME in declared:
            try:
                vault = Vault.unlock(tmp)
            except WrongPassphrase:
                raise WrongPassphrase(f"wrong passphrase for the encrypted export {label}") from None
            try:
                image = vault.read_file(tmp / SEALED_MANIFEST_NAME, "manifest")
            except ArchiveError as e:
                raise _bad(label, str(e)) from None
            _check_schema(label, lambda: mf.connect_image(image, write=False, label=SEALED_MANIFEST_NAME))
        else:
            _check_schema(label, lambda: mf.connect(tmp / MANIFEST_NAME, write=False))
        # Open without crash cleanup: an unreferenced file in the export must be reported by
        # verify, not silently deleted.
        try:
            a = Archive.open(tmp, write=True, recover=False, vault=vault)
        except ArchiveError as e:
            raise _bad(label, str(e)) from None
        try:
            problems = verify_archive(a)
        finally:
            a.close()
        if problems:
            p = problems[0]
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            rel = os.path.relpath(p.path, tmp) if p.path.startswith(str(tmp)) else p.path
            raise _bad(label, f"verification failed: {p.kind} {rel}: {p.message}{more}")
        crashpoint("import.verified")
        _swap_in(tmp, root)
        tmp = None
        crashpoint("import.swapped")
        fsync_dir(root.parent)
        return root
    except R3memError:
        raise
    except OSError as e:
        raise ArchiveError(f"import of {label} failed: {e}") from None
    finally:
        if held is not None:
            os.close(held)
        if raw is not None and isinstance(file, (str, os.PathLike)):
            raw.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
            for d in reversed(created_dirs):
                try:
                    d.rmdir()
                except OSError:
                    pass


def _hold(folder: Path) -> int:
    """An exclusive flock on `folder` itself, held until the returned descriptor is closed."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def _sweep_stale(root: Path) -> None:
    """Delete what a killed import left beside `root`: its unpacked temp folder (a whole archive's
    size) or the empty archive it was replacing. A folder whose flock (or lock file) is still held
    belongs to a live import and is left alone."""
    prefix = glob.escape(str(root.parent / f".{root.name}."))
    for found in sorted(glob.glob(prefix + "import-*") + glob.glob(prefix + "replaced-*")):
        path = Path(found)
        if path.is_symlink() or not path.is_dir():
            continue
        fds = []
        try:
            fds.append(os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)))
            if (path / "lock").is_file():
                fds.append(os.open(path / "lock", os.O_RDWR))
            for fd in fds:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by a live import, or gone already
            continue
        else:
            shutil.rmtree(path, ignore_errors=True)
        finally:
            for fd in fds:
                os.close(fd)


def _parse_head(label, data: bytes) -> dict:
    try:
        head = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise _bad(label, f"{MANIFEST_MEMBER} is not JSON") from None
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise _bad(label, f"{MANIFEST_MEMBER} does not describe an r3mem export")
    if head.get("format_version") != FORMAT_VERSION:
        raise ArchiveError(
            f"{label} has export format version {head.get('format_version')!r}; "
            f"this r3mem reads version {FORMAT_VERSION}"
        )
    members = head.get("members")
    plain = isinstance(members, dict) and MANIFEST_NAME in members and not {SEALED_MANIFEST_NAME, HEADER_NAME} & set(members)
    sealed = isinstance(members, dict) and {SEALED_MANIFEST_NAME, HEADER_NAME} <= set(members) \
        and MANIFEST_NAME not in members
    if not (plain or sealed) or len(members) > MAX_MEMBERS:
        raise _bad(label, f"{MANIFEST_MEMBER} has no valid member list")
    for name, m in members.items():
        if not allowed_member(name):
            raise _bad(label, f"unexpected member {name!r}")
        if (
            not isinstance(m, dict)
            or not isinstance(m.get("bytes"), int)
            or isinstance(m.get("bytes"), bool)
            or not 0 <= m["bytes"] <= MAX_MEMBER_BYTES
            or not isinstance(m.get("sha256"), str)
            or not re.fullmatch(r"[0-9a-f]{64}", m["sha256"])
        ):
            raise _bad(label, f"{MANIFEST_MEMBER} entry for {name!r} is malformed")
    return head


def _check_schema(label, connect) -> None:
    """Refuse any SQLite file whose schema is not exactly one our migrations produce (no extra
    triggers, views or altered tables), before opening it normally. `connect()` opens it."""
    try:
        conn = connect()
    except ArchiveError as e:
        raise _bad(label, str(e)) from None
    try:
        version = mf.schema_version(mf.applied_migrations(conn))
        diffs = mf.schema_differences(conn, version)
    except ArchiveError as e:
        raise _bad(label, str(e)) from None
    except sqlite3.DatabaseError as e:
        raise _bad(label, f"the manifest database is unreadable ({e})") from None
    finally:
        conn.close()
    if version == 0:
        raise _bad(label, "the manifest database has no r3mem schema")
    if diffs:
        raise _bad(label, f"unexpected database schema ({'; '.join(diffs[:3])})")


def _swap_in(tmp: Path, root: Path) -> None:
    """Rename the checked archive into place; an existing empty archive is replaced under its lock."""
    if not Archive.exists(root):
        if root.exists():
            root.rmdir()  # empty folder (checked before)
        os.rename(tmp, root)
        return
    with Archive.open(root, write=True) as old:
        if old.conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0]:
            raise ArchiveError(f"archive at {root} is not empty; import into a new folder or `r3mem forget` first")
        trash = root.parent / f".{root.name}.replaced-{secrets.token_hex(4)}"
        os.rename(root, trash)
        crashpoint("import.old_moved")
        os.rename(tmp, root)
    shutil.rmtree(trash, ignore_errors=True)
