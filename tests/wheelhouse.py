"""Wheels for offline environment builds in tests: no package index is ever asked.

- ``wheel_from_installed``: a wheel of a distribution installed here (pure Python only): its
  files as its RECORD lists them, its ``.dist-info`` with a RECORD made anew.
- ``requirement_closure``: what a distribution needs at run time, markers evaluated for this
  interpreter, extras ignored (pytest: pluggy, iniconfig, packaging, pygments).
- ``build_wheelhouse``: both together, into a folder ``uv pip install --no-index
  --find-links FOLDER`` installs from.
- ``tiny_wheel``: a wheel from ``{module path: source}`` (``modules_in`` reads them from a
  folder), METADATA, WHEEL and RECORD written by hand (no setuptools).

Everything is made readable by the sandbox's user (``nobody`` for a root worker): builds
bind the wheel folders into the sandbox as they are.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
import re
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from packaging.requirements import Requirement

NOT_PACKED = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json", "WHEEL"}
"""Installer records in an installed ``.dist-info``: no wheel has them (RECORD and WHEEL are
written anew)."""
NOT_PURE = (".so", ".pyd", ".dylib", ".dll")
ZIP_DATE = (2020, 1, 1, 0, 0, 0)
"""One timestamp for every entry: the same files make the same wheel, byte for byte."""


def normalized(name: str) -> str:
    """The distribution name as a wheel's file name spells it (PEP 427/503)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_name(name: str, version: str) -> str:
    return f"{normalized(name)}-{version}-py3-none-any.whl"


def readable(path: Path) -> Path:
    """Readable (and, for a folder, traversable) by every user: the sandbox's included."""
    os.chmod(path, 0o755 if path.is_dir() else 0o644)
    return path


def _wheel_file(generator: str = "fixstream-tests") -> bytes:
    return (
        f"Wheel-Version: 1.0\nGenerator: {generator}\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    ).encode()


def _record_line(arcname: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arcname},sha256={digest},{len(data)}"


def write_wheel(dest: Path, name: str, version: str, files: Mapping[str, bytes]) -> Path:
    """A wheel of ``files`` (archive names; the ``.dist-info`` ones included but WHEEL and
    RECORD, which are written here) in ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    readable(dest)
    dist_info = f"{normalized(name)}-{version}.dist-info"
    entries = {**files, f"{dist_info}/WHEEL": _wheel_file()}
    record = f"{dist_info}/RECORD"
    lines = [_record_line(arcname, data) for arcname, data in entries.items()]
    entries[record] = ("\n".join([*lines, f"{record},,"]) + "\n").encode()
    path = dest / wheel_name(name, version)
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for arcname, data in entries.items():
            info = zipfile.ZipInfo(arcname, ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    os.replace(tmp, path)
    return readable(path)


def wheel_from_installed(name: str, dest: Path) -> Path:
    """A wheel of the installed distribution ``name``; ValueError for one that is not pure
    Python (compiled modules cannot be repacked as ``py3-none-any``)."""
    dist = importlib.metadata.distribution(name)
    if "Root-Is-Purelib: true" not in (dist.read_text("WHEEL") or ""):
        raise ValueError(f"{name} is not a pure-Python distribution")
    if dist.files is None:
        raise ValueError(f"{name} has no RECORD: cannot tell which files are its own")
    project, version = dist.metadata["Name"], dist.version
    dist_info = f"{normalized(project)}-{version}.dist-info"
    files: dict[str, bytes] = {}
    for entry in dist.files:
        parts = entry.parts
        if not parts or parts[0] == ".." or "__pycache__" in parts or entry.suffix == ".pyc":
            continue  # console scripts (made again from entry_points.txt), bytecode
        if entry.suffix in NOT_PURE:
            raise ValueError(f"{name} is not a pure-Python distribution ({entry})")
        if parts[0].endswith(".dist-info"):
            if len(parts) == 2 and parts[1] in NOT_PACKED:
                continue
            arcname = "/".join([dist_info, *parts[1:]])
        else:
            arcname = entry.as_posix()
        files[arcname] = Path(entry.locate()).read_bytes()
    if f"{dist_info}/METADATA" not in files:
        raise ValueError(f"{name}: its RECORD does not list its METADATA")
    return write_wheel(dest, project, version, files)


def requirement_closure(*names: str) -> list[str]:
    """``names`` and every distribution they need at run time, as installed here (markers
    evaluated for this interpreter, extras ignored), sorted by canonical name."""
    found: dict[str, str] = {}
    queue = list(names)
    while queue:
        dist = importlib.metadata.distribution(queue.pop())
        project = dist.metadata["Name"]
        if canonical(project) in found:
            continue
        found[canonical(project)] = project
        for text in dist.requires or ():
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                queue.append(requirement.name)
    return [found[key] for key in sorted(found)]


def build_wheelhouse(dest: Path, names: Iterable[str]) -> list[Path]:
    """Wheels of ``names`` and their closure in ``dest``: what an offline build needs."""
    return [wheel_from_installed(name, dest) for name in requirement_closure(*names)]


def tiny_wheel(
    dest: Path,
    name: str,
    version: str,
    modules: Mapping[str, str],
    *,
    requires: Iterable[str] = (),
) -> Path:
    """A wheel of ``modules`` (``{"pkg/__init__.py": source}``), METADATA by hand."""
    metadata = "".join(
        [
            "Metadata-Version: 2.1\n",
            f"Name: {name}\n",
            f"Version: {version}\n",
            f"Summary: {name}, made by the tests\n",
            *(f"Requires-Dist: {r}\n" for r in requires),
        ]
    )
    dist_info = f"{normalized(name)}-{version}.dist-info"
    files = {path: source.encode() for path, source in modules.items()}
    files[f"{dist_info}/METADATA"] = metadata.encode()
    return write_wheel(dest, name, version, files)


def modules_in(folder: Path) -> dict[str, str]:
    """``{path: source}`` of the Python files under ``folder``, for ``tiny_wheel``."""
    return {
        path.relative_to(folder).as_posix(): path.read_text()
        for path in sorted(folder.rglob("*.py"))
        if "__pycache__" not in path.parts
    }
