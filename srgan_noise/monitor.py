"""Window means of the step figures, written as JSON lines and TensorBoard scalars."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from srgan_noise.atomic import write_text_atomic

METRICS_NAME = "metrics.jsonl"


class WindowMeans:
    """Running sums of each figure over the current window of steps."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.sums[name] += value
            self.counts[name] += 1

    def means(self) -> dict[str, float]:
        return {name: self.sums[name] / self.counts[name] for name in self.sums}

    def reset(self) -> None:
        self.sums.clear()
        self.counts.clear()


def first_non_finite(record: dict[str, Any]) -> str | None:
    for name, value in record.items():
        if isinstance(value, float) and not math.isfinite(value):
            return name
    return None


def read_metrics(run: Path) -> list[dict[str, Any]]:
    path = run / METRICS_NAME
    if not path.is_file():
        return []
    with path.open() as handle:
        return [json.loads(line) for line in handle if line.strip()]


class MetricsLog:
    """Appends one JSON object a window to <run>/metrics.jsonl and mirrors it to
    TensorBoard under <run>/tb. On resume, records past the checkpoint's step
    (written after it, before a crash) are dropped so the log has no repeats."""

    def __init__(self, run: Path, resume_step: int | None = None, tensorboard: bool = True) -> None:
        self.path = run / METRICS_NAME
        if resume_step is not None and self.path.is_file():
            kept = [r for r in read_metrics(run) if r["step"] <= resume_step]
            write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run / "tb"), purge_step=resume_step)

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for name, value in record.items():
                if isinstance(value, (int, float)) and name != "step":
                    self.writer.add_scalar(name, value, record["step"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
