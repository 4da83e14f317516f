"""`make warm`: train and cache every model of the course ahead of a lecture.

Loads each recipe of :mod:`course_lib.zoo` once in the active profile (the first load trains and
caches it; a cached model loads in milliseconds) behind a progress bar, and prints how long each
took. ``--only PATTERN`` restricts it to the names that contain PATTERN.
"""

from __future__ import annotations

import argparse
import time

from . import UsageError, run


def main(argv: list[str]) -> int:
    from tqdm.auto import tqdm

    from .. import config, zoo

    parser = argparse.ArgumentParser(prog="make warm", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="only the models whose name contains this")
    args = parser.parse_args(argv)
    names = [n for n in zoo.RECIPES if args.only in n]
    if not names:
        raise UsageError(f"no model name contains {args.only!r}: see course_lib/zoo/")
    todo = [n for n in names if not zoo.is_cached(n)]
    print(f"profile {config.profile()}: {len(names) - len(todo)} of {len(names)} models cached")
    for name in tqdm(todo, desc="training"):
        start = time.perf_counter()
        zoo.load(name)
        tqdm.write(f"  {name}: {time.perf_counter() - start:.1f} s")
    print(f"all {len(names)} models are cached in {config.cache_dir() / 'models'}")
    return 0


if __name__ == "__main__":
    run(main)
