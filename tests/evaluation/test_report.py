import base64
import errno
import io
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import srgan_noise.base.atomic as atomic_module
from srgan_noise.base.config import preset
from srgan_noise.base.errors import UserError
from srgan_noise.base.images import load_rgb
from srgan_noise.cli import app
from srgan_noise.evaluation.evaluate import EvalConfig, bicubic_down, bicubic_up, evaluate, evaluate_images
from srgan_noise.evaluation.report import CROP, HR, ZOOM, most_detailed_crop, png_data_uri, report_html
from srgan_noise.evaluation.results import BICUBIC, MODEL, EvalResult
from srgan_noise.inference.weights import save_generator
from srgan_noise.models.generator import Generator

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def generator():
    return Generator(preset("tiny", scale=4)).eval()


@pytest.fixture
def textured_folder(tmp_path):
    """Two 128x96 RGB PNGs: stripes plus noise, so bicubic, the model and HR all differ."""
    folder = tmp_path / "hr"
    folder.mkdir()
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:96, 0:128]
    for i in range(2):
        base = np.stack([np.sin(x / (2 + i)), np.cos(y / (3 + i)), np.sin(x * y / 50)], -1) * 100 + 128
        array = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(array).save(folder / f"img{i}.png")
    return folder


def _decode(uri: str) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))


def _data_uris(page: str) -> list[str]:
    return re.findall(r"data:image/png;base64,[A-Za-z0-9+/=]+", page)


# smoke


def test_page_embeds_every_method_and_hr_as_png(image_folder, generator):
    images = [(path.name, load_rgb(path)) for path in sorted(image_folder.iterdir())]
    result = evaluate_images(images, 4, generator, bicubic=True, keep_images=True)
    page = report_html(result)
    uris = _data_uris(page)
    assert len(uris) == 3 * len(images)  # model, bicubic, HR once each per image
    decoded = [_decode(uri) for uri in uris]
    for name, hr in images:
        kept = result.images[name]
        assert set(kept) == {MODEL, BICUBIC, HR}
        up = bicubic_up(bicubic_down(hr, 4), 4)
        with torch.inference_mode():
            sr = generator(bicubic_down(hr, 4)[None].float() / 255)[0].clamp(0, 1).mul(255).round().byte()
        for expected in (hr, up, sr):
            array = expected.permute(1, 2, 0).numpy()
            assert any(d.shape == array.shape and np.abs(d.astype(int) - array).max() <= 1 for d in decoded)
        assert png_data_uri(kept[BICUBIC]) in page and png_data_uri(kept[HR]) in page
        assert torch.equal(kept[HR], hr) and torch.equal(kept[BICUBIC], up)


def test_page_holds_the_table_values(image_folder, generator):
    images = [(path.name, load_rgb(path)) for path in sorted(image_folder.iterdir())]
    result = evaluate_images(images, 4, generator, bicubic=True, keep_images=True)
    page = report_html(result)
    table = page[page.index('<table class="metrics">'):page.index("</table>")]
    for row in result.rows:
        assert f"<td>{row.psnr:.2f}</td><td>{row.ssim:.4f}</td><td>{row.hf_ratio:.3f}</td>" in table
    for mean in result.mean.values():
        assert f"<td>{mean['psnr']:.2f}</td><td>{mean['ssim']:.4f}</td><td>{mean['hf_ratio']:.3f}</td>" in table
    assert "mean of 4" in table and "critic" not in table


def test_page_is_self_contained(image_folder, generator):
    images = [(path.name, load_rgb(path)) for path in sorted(image_folder.iterdir())]
    page = report_html(evaluate_images(images, 4, generator, bicubic=True, keep_images=True))
    assert "http://" not in page and "https://" not in page and "file:" not in page
    assert not re.search(r"<(link|iframe)|<script[^>]+src=|<img[^>]+src=|url\(", page)
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")


def test_critic_row_and_escaped_names():
    hr = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    result = evaluate_images([("<b>&.png", hr)], 4, bicubic=True, keep_images=True)
    mean = result.mean | {BICUBIC: result.mean[BICUBIC] | {"critic": 0.75, "critic_se": 0.031}}
    page = report_html(EvalResult(result.rows, mean, 4, weights=None, images=result.images))
    assert "&lt;b&gt;&amp;.png" in page and "<b>&" not in page
    assert "<td>0.750</td><td>± 0.031</td>" in page


def test_most_detailed_crop_finds_the_texture():
    hr = torch.full((3, 60, 80), 128, dtype=torch.uint8)
    hr[:, 30:46, 50:66] = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8)
    x, y = most_detailed_crop(hr, 16)
    assert (x, y) == (50, 30)
    assert most_detailed_crop(hr, 60)[1] == 0  # a window as tall as the image


def test_evaluate_writes_index_html_only_when_asked(image_folder, tmp_path):
    assert evaluate(EvalConfig(data=str(image_folder), bicubic=True)).images is None
    out = tmp_path / "report" / "nested"
    result = evaluate(EvalConfig(data=str(image_folder), bicubic=True, html=out))
    assert [p.name for p in out.iterdir()] == ["index.html"]  # no temporary file left
    assert (out / "index.html").read_text(encoding="utf-8") == report_html(result)


# exception


def test_no_kept_images():
    result = evaluate_images([("a.png", torch.zeros(3, 32, 32, dtype=torch.uint8))], 4, bicubic=True)
    with pytest.raises(ValueError, match="no images to show"):
        report_html(result)


@pytest.mark.parametrize("case", ["file", "under-a-file"])
def test_html_folder_that_cannot_be_one_fails_before_scoring(case, image_folder, tmp_path, monkeypatch):
    (tmp_path / "taken").write_text("a file")
    html = tmp_path / "taken" if case == "file" else tmp_path / "taken" / "report"
    monkeypatch.setattr("srgan_noise.evaluation.evaluate.list_images", lambda folder: pytest.fail("scored before the check"))
    with pytest.raises(UserError, match=f"{re.escape(str(html))}: not a folder \\(.*taken is a file\\)"):
        evaluate(EvalConfig(data=str(image_folder), bicubic=True, html=html))


def test_full_disk_keeps_the_previous_page(image_folder, tmp_path, monkeypatch):
    out = tmp_path / "report"
    out.mkdir()
    (out / "index.html").write_text("previous")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic_module.os, "fsync", full)
    with pytest.raises(UserError, match=f"{re.escape(str(out))}: cannot write the report there "
                                        r"\(No space left on device\)"):
        evaluate(EvalConfig(data=str(image_folder), bicubic=True, html=out))
    assert [p.name for p in out.iterdir()] == ["index.html"] and (out / "index.html").read_text() == "previous"


@pytest.mark.parametrize("case", ["file", "under-a-file"])
def test_command_bad_html_folder_is_one_line(case, image_folder, tmp_path):
    (tmp_path / "taken").write_text("a file")
    html = tmp_path / "taken" if case == "file" else tmp_path / "taken" / "report"
    result = CliRunner().invoke(app, ["eval", "--data", str(image_folder), "--bicubic", "--html", str(html)])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [f"error: {html}: not a folder ({tmp_path / 'taken'} is a file)"]


# browser


def _screenshot(page) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(page.screenshot())).convert("RGB")).astype(int)


def _box(locator) -> tuple[int, int, int, int]:
    """Left, top, right, bottom in screenshot pixels (device scale factor 1)."""
    box = locator.bounding_box()
    return (round(box["x"]), round(box["y"]), round(box["x"] + box["width"]), round(box["y"] + box["height"]))


def test_page_in_a_browser(textured_folder, tmp_path):
    """The page of a real `srgan eval --html`, opened offline from file:// in Chromium:
    images load, the divider drags, the dropdowns switch, the zoom magnifies the crop."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed")
    weights = tmp_path / "tiny.safetensors"
    save_generator(Generator(preset("tiny", scale=4)), weights)
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["eval", "--data", str(textured_folder), "--weights", str(weights), "--bicubic",
                                      "--html", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines() == [f"wrote {out / 'index.html'}"]
    hr = load_rgb(textured_folder / "img0.png").permute(1, 2, 0).numpy().astype(int)
    bicubic = bicubic_up(bicubic_down(load_rgb(textured_folder / "img0.png"), 4), 4).permute(1, 2, 0).numpy()

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1000, "height": 900}, device_scale_factor=1, offline=True)
            page = context.new_page()
            requests, errors = [], []
            page.on("request", lambda request: requests.append(request.url))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto((out / "index.html").as_uri())
            page.wait_for_function("[...document.images].every((image) => image.complete)")
            sizes = page.evaluate("[...document.images].map((image) => [image.naturalWidth, image.naturalHeight])")
            assert sizes == [[128, 96]] * 8  # 2 figures x (under, over, zoom left, zoom right)
            assert all(url.startswith(("file:", "data:")) for url in requests), requests
            figure = page.locator("figure.comparison").first
            view, panes = figure.locator(".view"), figure.locator(".pane")
            left, top, right, bottom = _box(view)
            assert (right - left, bottom - top) == (128, 96)
            assert figure.locator("select.left").input_value() == BICUBIC
            assert figure.locator("select.right").input_value() == MODEL

            # The crop box's outline is drawn over the view: compare pixels off its rim only. The view
            # may sit at a fractional y (text above it), which blends its first row with the page.
            box_left, box_top, box_right, box_bottom = _box(figure.locator(".box"))
            off_rim = np.ones((bottom - top, right - left), bool)
            off_rim[[0, -1]] = False
            off_rim[box_top - top - 4:box_bottom - top + 4, box_left - left - 4:box_right - left + 4] = False
            off_rim[box_top - top + 1:box_bottom - top - 1, box_left - left + 1:box_right - left - 1] = True

            def shows(screenshot, start, stop, image):
                """Whether view columns start:stop show those columns of `image`."""
                keep = off_rim[:, start:stop]
                return np.array_equal(screenshot[top:bottom, left + start:left + stop][keep], image[:, start:stop][keep])

            # The right dropdown: right of the divider (x = 64) becomes HR; the left half stays bicubic.
            before = _screenshot(page)
            assert shows(before, 0, 60, bicubic)
            figure.locator("select.right").select_option(HR)
            after = _screenshot(page)
            middle = left + 64
            assert shows(after, 68, 128, hr) and not shows(before, 68, 128, hr)
            assert shows(after, 0, 60, bicubic)
            zoom_left, zoom_right = _box(panes.nth(0)), _box(panes.nth(1))
            assert not np.array_equal(before[zoom_right[1]:zoom_right[3], zoom_right[0]:zoom_right[2]],
                                      after[zoom_right[1]:zoom_right[3], zoom_right[0]:zoom_right[2]])

            # Drag the divider from 64 px to 24 px: between them bicubic gives way to HR; nothing else moves.
            y = (top + bottom) // 2
            page.mouse.move(middle, y)
            page.mouse.down()
            page.mouse.move(left + 40, y, steps=4)
            page.mouse.move(left + 24, y, steps=4)
            page.mouse.up()
            dragged = _screenshot(page)
            assert figure.locator("input.divider").input_value() == str(round(1000 * 24 / 128))
            band = (slice(top, bottom), slice(left + 24 + 4, middle - 4))
            assert shows(dragged, 28, 60, hr) and shows(dragged, 0, 20, bicubic)
            assert (dragged[band] != after[band]).any(axis=-1).mean() > 0.9
            unchanged = np.ones(dragged.shape[:2], bool)
            unchanged[top - 3:bottom + 3, left + 24 - 6:middle + 6] = False  # the band, the bar's old and new places
            range_left, range_top, range_right, range_bottom = _box(figure.locator("input.divider"))
            unchanged[range_top:range_bottom, range_left:range_right] = False  # its thumb moves too
            moved = np.argwhere((dragged != after).any(axis=-1) & unchanged)
            assert len(moved) == 0, f"changed outside the band: (y, x) {moved[:5].tolist()} ... {moved[-5:].tolist()}"

            # Zoom: the crop of the left method (bicubic), each pixel a ZOOM x ZOOM block.
            def zoomed(screenshot, image, pane):
                x, y = int(figure.get_attribute("data-x")), int(figure.get_attribute("data-y"))
                expected = image[y:y + CROP, x:x + CROP].repeat(ZOOM, 0).repeat(ZOOM, 1)
                return np.abs(screenshot[pane[1]:pane[3], pane[0]:pane[2]] - expected).max()

            assert zoom_left[2] - zoom_left[0] == CROP * ZOOM
            assert zoomed(dragged, bicubic, zoom_left) == 0 and zoomed(dragged, hr, zoom_right) == 0
            origin = (int(figure.get_attribute("data-x")), int(figure.get_attribute("data-y")))
            assert origin == most_detailed_crop(load_rgb(textured_folder / "img0.png"), CROP)
            # Click on the image's right half: the crop centred there (clamped to the image), zoom follows.
            view.click(position={"x": 100, "y": 30})
            assert (int(figure.get_attribute("data-x")), int(figure.get_attribute("data-y"))) == (76, 6)
            clicked = _screenshot(page)
            assert zoomed(clicked, bicubic, zoom_left) == 0 and zoomed(clicked, hr, zoom_right) == 0
            assert figure.locator("input.divider").input_value() == str(round(1000 * 24 / 128))  # not a drag
            assert errors == []
            page.screenshot(path=str(tmp_path / "report.png"))
        finally:
            browser.close()
