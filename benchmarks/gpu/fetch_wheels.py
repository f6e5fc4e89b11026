"""Download the wheels that spatialedm needs on the lent GPU machine and that its image lacks.

The lent machines have no network and a fixed image: Python 3.12 with CUDA PyTorch, Lightning, JAX,
NumPy, pandas, SciPy, scikit-learn, matplotlib and more (``device_image_packages.txt``, copied from the
device notes), but not anndata, scanpy or scvi-tools. This script, run where ``pip`` can reach PyPI,
walks spatialedm's requirements and downloads a CPython 3.12 manylinux wheel of every package that is
missing from the image into ``.whl/`` (pure-Python packages published only as source are built into
wheels here). ``benchmarks/gpu/gpu.sh`` installs them there with ``--no-index --no-deps``.

Packages already in the image are never downloaded, so the image's CUDA builds stay in charge. A
package installed in the interpreter running this script is pinned to its installed version (run it with
the project's tested ``.venv``, so the GPU machine gets the same anndata / scanpy / scvi-tools); others
get pip's newest for Python 3.12. The image's own packages must satisfy them: a mismatch shows up as an
import error in ``gpu.sh``'s first step, which costs seconds.

Examples
--------
python benchmarks/gpu/fetch_wheels.py            # writes .whl/ in the repository root
python benchmarks/gpu/fetch_wheels.py --dest .whl --python-version 3.12
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"]
logger = logging.getLogger("fetch_wheels")


def image_packages(path: Path) -> set[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return {canonicalize_name(name) for name in lines if name}


def project_requirements() -> list[Requirement]:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in meta["dependencies"]]


def wheel_requirements(wheel: Path, env: dict) -> list[Requirement]:
    """The wheel's ``Requires-Dist`` entries that apply to ``env`` (no extras)."""
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(zf.read(name).decode())
    out = []
    for line in meta.get_all("Requires-Dist") or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({**env, "extra": ""}):
            out.append(req)
    return out


def pinned(req: Requirement) -> Requirement:
    """``req`` pinned to the version installed here, when there is one."""
    try:
        return Requirement(f"{req.name}=={importlib.metadata.version(req.name)}")
    except importlib.metadata.PackageNotFoundError:
        return req


def download(req: Requirement, dest: Path, python_version: str) -> Path:
    """One wheel for ``req`` (binary for the target platform; else built here from a pure-Python sdist)."""
    before = set(dest.glob("*.whl"))
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        python_version,
        "--implementation",
        "cp",
        "-d",
        str(dest),
    ]
    for plat in PLATFORMS:
        cmd += ["--platform", plat]
    res = subprocess.run([*cmd, str(req)], capture_output=True, text=True)
    if res.returncode != 0:
        # No wheel on PyPI (e.g. docrep): build one here; only pure-Python packages end up portable.
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", tmp, str(req)],
                check=True,
            )
            built = next(Path(tmp).glob("*.whl"))
            if not built.name.endswith("-none-any.whl"):
                raise RuntimeError(
                    f"{req} has no {python_version} wheel and is not pure Python ({built.name})."
                )
            target = dest / built.name
            target.write_bytes(built.read_bytes())
    new = set(dest.glob("*.whl")) - before
    if not new:  # already downloaded earlier
        stem = canonicalize_name(req.name)
        return next(w for w in dest.glob("*.whl") if canonicalize_name(w.name.split("-")[0]) == stem)
    return new.pop()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dest", type=Path, default=REPO / ".whl")
    p.add_argument("--python-version", default="3.12")
    p.add_argument("--image", type=Path, default=HERE / "device_image_packages.txt")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.dest.mkdir(parents=True, exist_ok=True)
    provided = image_packages(args.image)
    env = {
        "python_version": args.python_version,
        "python_full_version": f"{args.python_version}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }
    queue, seen = project_requirements(), set()
    while queue:
        req = queue.pop(0)
        name = canonicalize_name(req.name)
        if name in seen or name in provided:
            continue
        seen.add(name)
        wheel = download(pinned(req), args.dest, args.python_version)
        logger.info("%-40s %6.1f MB", wheel.name, wheel.stat().st_size / 2**20)
        queue.extend(wheel_requirements(wheel, env))
    total = sum(w.stat().st_size for w in args.dest.glob("*.whl")) / 2**20
    logger.info("%d wheels, %.1f MB in %s", len(list(args.dest.glob("*.whl"))), total, args.dest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
