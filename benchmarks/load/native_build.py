"""The compiled native module (`dragonfly/_native*.so`) of a given commit, for the A/B harnesses.

A comparison of two commits is only honest when each runs its own native core. When rust_core/ is the
same in the commit and in the working tree, the working tree's compiled module stands in (no build);
when it differs, the commit's own rust_core is built once (`maturin build --release` of a `git archive`
of the commit, cached per commit under the bench cache; the crates.io dependencies are compiled once into
a target directory shared by every such build) and its module is used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from benchmarks.load import services
from benchmarks.load.targets import CACHE

# What a native build of a commit needs from it.
_BUILD_PATHS = ("Cargo.toml", "Cargo.lock", "rust_core", "pyproject.toml", "python", "README.md")


def _git(*args: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(services.REPO), *args], capture_output=True, text=True, timeout=300
    )
    if out.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {out.stderr.strip()[:500]}")
    return out.stdout.strip()


def differs(sha: str) -> bool:
    """rust_core/ (or the workspace's Cargo files) differ between `sha` and the working tree."""
    return bool(_git("diff", "--stat", sha, "--", "rust_core/", "Cargo.toml", "Cargo.lock"))


def working_tree_modules() -> list[Path]:
    sos = sorted((services.REPO / "python" / "dragonfly").glob("_native*.so"))
    if not sos:
        raise RuntimeError("no compiled python/dragonfly/_native*.so in the working tree: build it first")
    return sos


def modules_for(sha: str) -> tuple[list[Path], str]:
    """(the native module files to run `sha` with, how they were made)."""
    if not differs(sha):
        return working_tree_modules(), "the working tree's native module (rust_core/ is the same)"
    return [_built(sha)], f"its own native module (rust_core/ differs: built from {sha[:7]})"


def _built(sha: str) -> Path:
    out = CACHE / f"native-{sha[:12]}"
    done = sorted(out.glob("_native*.so"))
    if done:
        return done[0]
    src = out / "src"
    shutil.rmtree(out, ignore_errors=True)
    src.mkdir(parents=True)
    services.git_export(sha, _BUILD_PATHS, src)
    maturin = Path(sys.executable).with_name("maturin")
    print(
        f"  building {sha[:7]}'s native module (maturin build --release; minutes the first time)", flush=True
    )
    subprocess.run(
        [
            str(maturin),
            "build",
            "--release",
            "--quiet",
            "--auditwheel",
            "skip",  # it links the system libsqlite3 (rust_core/io), as the development build does
            "--interpreter",
            sys.executable,
            "--out",
            str(out / "wheel"),
        ],
        cwd=src,
        env={**os.environ, "CARGO_TARGET_DIR": str(CACHE / "native-target")},
        check=True,
        timeout=3600,
    )
    (wheel,) = sorted((out / "wheel").glob("*.whl"))
    with zipfile.ZipFile(wheel) as z:
        (name,) = [n for n in z.namelist() if n.startswith("dragonfly/_native") and n.endswith(".so")]
        target = out / Path(name).name
        target.write_bytes(z.read(name))
    shutil.rmtree(src, ignore_errors=True)
    return target


def install(sha: str, tree: Path) -> str:
    """Put `sha`'s native module into the source tree `tree` (its `python/dragonfly/`); returns how it
    was made."""
    sos, how = modules_for(sha)
    for old in (tree / "python" / "dragonfly").glob("_native*.so"):
        old.unlink()
    for so in sos:
        shutil.copy2(so, tree / "python" / "dragonfly" / so.name)
    return how
