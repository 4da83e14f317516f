"""`make bench`: every benchmark of the course against its peer library, in one run."""

import json
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import bench_at  # noqa: E402  (chapter 3)
import bench_gloro  # noqa: E402
import bench_lipschitz  # noqa: E402
import bench_lipschitz_nets  # noqa: E402
import bench_pgd  # noqa: E402
import bench_regularization  # noqa: E402
import bench_smoothing  # noqa: E402
import bench_tv  # noqa: E402


def main() -> None:
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    )
    rows = bench_pgd.run() + bench_smoothing.run() + bench_lipschitz.run()
    rows += bench_tv.run()  # chapter 2
    rows += bench_at.run()  # chapter 3
    rows += bench_regularization.run()  # chapter 4
    rows += bench_lipschitz_nets.run()  # chapter 5 part 2
    rows += bench_gloro.run()  # chapter 5 part 3
    print(f"{'benchmark':<56} {'course_lib':>11} {'peer':>11} {'ratio':>7}  peer")
    for r in rows:
        print(
            f"{r['case']:<56} {r['course_lib_ms']:>9.1f}ms {r['peer_ms']:>9.1f}ms "
            f"{r['ratio']:>7.3f}  {r['peer']}"
        )
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(rows, indent=2))
    print(f"ratio = course_lib / peer (< 1 is faster); saved {out}/latest.json")


if __name__ == "__main__":
    main()
