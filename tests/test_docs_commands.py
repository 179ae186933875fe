"""The cheap shell commands of README.md and docs/ run as written: every `srgan upscale`
and `srgan export` example, and every --help/--version, on small inputs made here."""

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from srgan_noise.base.config import preset
from srgan_noise.cli import app
from srgan_noise.inference.weights import save_generator
from srgan_noise.models.generator import build_generator

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
CUDA_ONLY = ("--device cuda",)  # examples for a GPU: the suite runs without one


def fenced_commands(page: Path) -> list[str]:
    """The `srgan ...` lines of a page's fenced shell blocks, continuation lines joined."""
    commands = []
    for block in re.findall(r"```(?:bash|sh|console)?\n(.*?)```", page.read_text(), re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            if line.strip().startswith("srgan "):
                commands.append(line.strip())
    return commands


def cheap(command: str) -> bool:
    words = command.split("#")[0].split()
    return (words[1] in ("upscale", "export") or "--help" in words or "--version" in words) and \
        not any(flag in command for flag in CUDA_ONLY)


CHEAP = [(page.relative_to(REPO).as_posix(), command) for page in PAGES for command in fenced_commands(page)
         if cheap(command)]


def test_the_pages_have_cheap_commands_to_run():
    assert len(CHEAP) >= 5 and any(page == "README.md" for page, _ in CHEAP)


def make_inputs(folder: Path) -> None:
    """What the examples name: an RGB photo, an RGBA logo, a 16-bit TIFF scan, a folder of
    shots, a run's weights (a tiny generator) and the shipped files under their checkout path."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(folder / "photo.jpg")
    Image.fromarray(np.dstack([rgb, rng.integers(0, 256, (20, 24), dtype=np.uint8)])).save(folder / "logo.png")
    Image.fromarray(rgb).save(folder / "scan16.tif")
    (folder / "shots").mkdir()
    for i in range(2):
        Image.fromarray(np.roll(rgb, i, axis=1)).save(folder / "shots" / f"shot{i}.png")
    (folder / "runs" / "<run>").mkdir(parents=True)
    save_generator(build_generator(preset("tiny")), folder / "runs" / "<run>" / "generator.safetensors")
    (folder / "srgan_noise").symlink_to(REPO / "srgan_noise")


@pytest.mark.parametrize("page, command", CHEAP, ids=[f"{page}: {command.split('#')[0].strip()}"
                                                      for page, command in CHEAP])
def test_command_runs_as_written(page, command, tmp_path, monkeypatch, one_thread):
    make_inputs(tmp_path)
    monkeypatch.chdir(tmp_path)
    words, _, comment = command.partition("#")
    result = CliRunner().invoke(app, shlex.split(words)[1:])
    assert result.exit_code == 0, f"{page}: {command}\n{result.output}"
    promised = re.search(r"-> (\S+\.\w+)", comment)  # "# ... -> photo_x4.jpg": the output it names
    if promised:
        assert (tmp_path / promised.group(1)).is_file()
    outputs = shlex.split(words)
    if "-o" in outputs and not outputs[outputs.index("-o") + 1].endswith("/"):
        assert (tmp_path / outputs[outputs.index("-o") + 1]).is_file()
