"""Exact pins from requirements.lock.txt for part of it, for the image build (deploy/Dockerfile).

The lock holds the runtime, test, bench and build sets in one universal resolution. The image installs
only what it needs, still from the lock:

    python deploy/lock_pins.py runtime  > runtime.txt   # pyproject's [project] dependencies
    python deploy/lock_pins.py maturin  > build.txt     # named packages
    uv pip install --require-hashes -c requirements.lock.txt -r runtime.txt

`--require-hashes` with the lock as constraints: every package installed, the named ones and everything
they pull in, must be in the lock at its pinned version and match one of its sha256 hashes; anything
else is refused. Standard library only (runs before anything is installed)."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)(\s*;\s*([^\\]+?))?\s*\\?$")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins(lock_text: str) -> dict[str, list[tuple[str, str | None]]]:
    """{normalised name: [(version, environment marker or None), ...]} of every package in the lock."""
    pins: dict[str, list[tuple[str, str | None]]] = {}
    for line in lock_text.splitlines():
        match = _PIN.match(line)
        if match:
            name, version, marker = match.group(1), match.group(2), match.group(4)
            pins.setdefault(normalise(name), []).append((version, marker.strip() if marker else None))
    return pins


def runtime_names(pyproject_text: str) -> list[str]:
    """The names in pyproject's [project] dependencies (extras and markers are the lock's business)."""
    deps = tomllib.loads(pyproject_text)["project"]["dependencies"]
    names = []
    for dep in deps:
        match = _NAME.match(dep)
        if match is None:
            raise ValueError(f"cannot read a package name in {dep!r}")
        names.append(match.group(1))
    return names


def pin_lines(names: list[str], lock_text: str) -> list[str]:
    """`name==version[ ; marker]` for each name, as the lock pins it (one line per marker variant)."""
    pins = lock_pins(lock_text)
    out = []
    for name in names:
        found = pins.get(normalise(name))
        if not found:
            raise SystemExit(f"lock_pins: {name} is not in requirements.lock.txt; run `make lock`")
        for version, marker in found:
            out.append(f"{normalise(name)}=={version}" + (f" ; {marker}" if marker else ""))
    return out


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    lock = (ROOT / "requirements.lock.txt").read_text(encoding="utf-8")
    if argv == ["runtime"]:
        names = runtime_names((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    else:
        names = argv
    print("\n".join(pin_lines(names, lock)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
