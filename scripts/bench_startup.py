"""Start-up of the `srgan` command against a bare `import torch`, all figures measured in one run.

Each command runs as a fresh process `--repeats` times; the table gives the minimum and the
median wall-clock seconds and, for each, the excess over `python -c "import torch"` (the
floor any command that runs a model pays). `upscale` is a whole `srgan upscale` of a 64x64
PNG with the fast model, so its time is start-up plus a negligible forward and write.

    .venv/bin/python scripts/bench_startup.py [--repeats 7] [--source DIR]

--source DIR times the srgan_noise of another checkout (e.g. a `git worktree` of an older
commit) with this venv's Python, for before/after figures on the same machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Runs the CLI of --source's checkout, not the editable install's.
BOOTSTRAP = ("import sys; sys.meta_path = [f for f in sys.meta_path if 'editable' not in type(f).__module__.lower()]; "
             "sys.path.insert(0, {source!r}); sys.argv[0] = 'srgan'; from srgan_noise.cli import main; main()")


def timed(command: list[str], repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--source", type=Path, help="a checkout whose srgan_noise to time (default: the installed one)")
    args = parser.parse_args()
    import numpy as np
    from PIL import Image

    if args.source is not None:
        srgan = [sys.executable, "-c", BOOTSTRAP.format(source=str(args.source.resolve()))]
    else:
        srgan = [sys.executable, "-m", "srgan_noise"]
    with tempfile.TemporaryDirectory() as folder:
        image = Path(folder) / "small.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(image)
        commands = {
            "python -c 'import torch'": [sys.executable, "-c", "import torch"],
            "srgan --help": [*srgan, "--help"],
            "srgan upscale (64x64, --model fast)": [*srgan, "upscale", str(image), "--model", "fast", "--force",
                                                    "--no-progress", "-o", str(Path(folder) / "out.png")],
        }
        results = {name: timed(command, args.repeats) for name, command in commands.items()}
    floor = results["python -c 'import torch'"]
    print(f"{args.repeats} runs each{' of ' + str(args.source) if args.source else ''}; seconds\n")
    print("| command | min | median | min - import torch | median - import torch |")
    print("|---|---:|---:|---:|---:|")
    for name, seconds in results.items():
        low, mid = min(seconds), statistics.median(seconds)
        print(f"| {name} | {low:.2f} | {mid:.2f} | {low - min(floor):+.2f} | {mid - statistics.median(floor):+.2f} |")


if __name__ == "__main__":
    main()
