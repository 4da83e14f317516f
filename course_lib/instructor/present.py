"""`make present NB=<notebook or chapter>`: serve notebooks as a live app without code cells.

Voilà runs the notebook in a fresh kernel and shows only its outputs and widgets, so an instructor
moves the ε, σ, L̂ sliders in front of a class. The server listens on 127.0.0.1 only, behind a
token printed with the address. The zoo cache must hold the notebook's models (`make warm`), so
that the page is ready in seconds rather than after minutes of training.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from . import ROOT, UsageError, notebooks, run, zoo_names


def missing_models(paths: list[Path]) -> list[str]:
    """Models the notebooks load that are not in the zoo cache (or are stale) for this profile."""
    from .. import zoo

    missing = []
    for name in sorted({n for p in paths for n in zoo_names(p)}):
        if name in zoo.RECIPES and not zoo.is_cached(name):
            missing.append(name)
    return missing


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def voila_command(paths: list[Path], port: int, token: str) -> list[str]:
    target = paths[0] if len(paths) == 1 else paths[0].parent
    voila = shutil.which("voila", path=str(Path(sys.executable).parent)) or "voila"
    return [
        voila, str(target), "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1",
        f"--token={token}", "--strip_sources=True",
    ]  # fmt: skip


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="make present", description=__doc__.splitlines()[0])
    parser.add_argument("target", nargs="?", help="a notebook, or a chapter such as 01_lipschitz")
    parser.add_argument("--port", type=int, default=8866)
    parser.add_argument("--allow-training", action="store_true", help="start even if models "
                        "are not cached (they train when the notebook runs)")  # fmt: skip
    args = parser.parse_args(argv)
    if not args.target:
        raise UsageError(
            "say what to present: make present NB=chapters/01_lipschitz (or a notebook)"
        )
    paths = notebooks(args.target)
    missing = missing_models(paths)
    if missing and not args.allow_training:
        raise UsageError(
            f"{len(missing)} model(s) not cached yet ({', '.join(missing[:4])}"
            f"{', ...' if len(missing) > 4 else ''}): run `make warm` first"
        )
    if not port_is_free(args.port):
        raise UsageError(f"port {args.port} is in use: choose another, e.g. make present PORT=8867")
    token = os.environ.get("PRESENT_TOKEN") or secrets.token_hex(16)
    command = voila_command(paths, args.port, token)
    what = paths[0].relative_to(ROOT) if len(paths) == 1 else paths[0].parent.name
    url = f"http://127.0.0.1:{args.port}/?token={token}"
    print(f"presenting {what} at {url}  (Ctrl-C stops)", flush=True)
    return subprocess.call(command, cwd=ROOT)


if __name__ == "__main__":
    run(main)
