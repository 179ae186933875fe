"""Window means of the step figures, written as JSON lines and TensorBoard scalars."""

from __future__ import annotations

import errno
import json
import math
import os
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

from srgan_noise.base.atomic import reporting_write_errors, write_text_atomic
from srgan_noise.base.errors import UserError

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
    """The records of <run>/metrics.jsonl. A torn last line (a write cut short by
    a crash or a full disk) is skipped with a warning; a bad line before it is an error."""
    path = run / METRICS_NAME
    if not path.is_file():
        return []
    lines = [(number, line) for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace")
                                                          .splitlines(), 1) if line.strip()]
    records = []
    for number, line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            if number == lines[-1][0]:
                warnings.warn(f"{path}: skipped its torn last line {number} (a write cut short)")
                break
            raise UserError(f"{path}: line {number} is not a metrics record")
        records.append(record)
    return records


class MetricsLog:
    """Appends one JSON object a window to <run>/metrics.jsonl and mirrors it to
    TensorBoard under <run>/tb. On resume, records past the checkpoint's step
    (written after it, before a crash) are dropped so the log has no repeats; a
    fresh run (no checkpoint) starts a new log, dropping a killed run's records."""

    def __init__(self, run: Path, resume_step: int | None = None, tensorboard: bool = True) -> None:
        self.path = run / METRICS_NAME
        with reporting_write_errors(self.path, "it is kept as it was"):
            if resume_step is None:
                self.path.unlink(missing_ok=True)
            elif self.path.is_file():
                kept = [r for r in read_metrics(run) if r["step"] <= resume_step]
                write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step 0 on a fresh run hides a killed run's events in the same tb/.
            self.writer = SummaryWriter(str(run / "tb"), purge_step=resume_step or 0)

    def write(self, record: dict[str, Any]) -> None:
        """Append the record's line in one write, on disk (fsync) before returning;
        a failed write (a full disk) is cut back off, so no torn line is left."""
        line = (json.dumps(record) + "\n").encode()
        with reporting_write_errors(self.path, "the earlier records are kept"):
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                length = os.fstat(fd).st_size
                try:
                    if os.write(fd, line) != len(line):  # short: the disk filled mid-line
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    os.fsync(fd)
                except OSError:
                    os.ftruncate(fd, length)
                    raise
            finally:
                os.close(fd)
        if self.writer is not None:
            for name, value in record.items():
                if isinstance(value, (int, float)) and name != "step":
                    self.writer.add_scalar(name, value, record["step"])
            self.writer.flush()

    def write_image(self, tag: str, image: Any, step: int) -> None:
        """A (3, H, W) image in [0, 1] to TensorBoard (nothing without a writer)."""
        if self.writer is not None:
            self.writer.add_image(tag, image, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
