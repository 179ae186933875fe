"""`srgan eval --html`: one self-contained page to look at what the figures measure.

Per image, a before/after slider between any two of the scored methods and the
HR image, and a magnified crop of both; then eval's metrics table. Everything
is inline (PNG data URIs, CSS, JS), so the page opens offline from file:// and
can be mailed as one file. Images are embedded at full size, as lossless PNG,
however large: eval runs on benchmark images (Set5/Set14 are at most 0.4 MP),
and downscaling would hide exactly the pixels the page is for."""

from __future__ import annotations

import base64
import html
import io
import json
import numpy as np
import torch
from PIL import Image

from srgan_noise.evaluation.results import EvalResult

HR, HR_LABEL = "hr", "HR (ground truth)"  # the ground truth's key in EvalResult.images, and its name
CROP = 48  # px of the image shown in the zoom panes
ZOOM = 4  # each crop pixel becomes ZOOM x ZOOM screen pixels


def png_data_uri(image: torch.Tensor) -> str:
    """(3, H, W) uint8 -> "data:image/png;base64,..."."""
    buffer = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def most_detailed_crop(hr: torch.Tensor, size: int) -> tuple[int, int]:
    """Top-left (x, y) of the `size` x `size` window of (3, H, W) uint8 `hr` with the
    most luma gradient energy: where methods differ most, so the zoom opens there."""
    luma = hr.double().mul(torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64)[:, None, None]).sum(0).numpy()
    energy = np.zeros_like(luma)
    energy[:, 1:] += np.abs(np.diff(luma, axis=1))
    energy[1:, :] += np.abs(np.diff(luma, axis=0))
    table = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))  # summed-area table: any window sum in O(1)
    windows = table[size:, size:] - table[:-size, size:] - table[size:, :-size] + table[:-size, :-size]
    y, x = np.unravel_index(np.argmax(windows), windows.shape)
    return int(x), int(y)


def report_html(result: EvalResult) -> str:
    """The page for an EvalResult whose images were kept (evaluate_images(..., keep_images=True))."""
    if result.images is None:
        raise ValueError("no images to show: evaluate_images(..., keep_images=True) keeps them")
    labels = {method: result.label(method) for method in result.methods} | {HR: HR_LABEL}
    figures = "\n".join(_figure(name, views, labels) for name, views in result.images.items())
    weights = f"; weights {html.escape(result.weights)}" if result.weights else ""
    return _PAGE.format(title=f"srgan eval x{result.scale}", figures=figures, table=_table(result),
                        protocol=f"x{result.scale}, Y channel (BT.601), {result.scale} px border{weights}")


def _figure(name: str, views: dict[str, torch.Tensor], labels: dict[str, str]) -> str:
    methods = [method for method in labels if method in views]  # scored methods in eval's order, then HR
    height, width = views[methods[0]].shape[-2:]
    crop = min(CROP, height, width)
    x, y = most_detailed_crop(views[methods[-1]], crop)
    # Before | after: bicubic | the model when both were scored, else the one scored | HR.
    scored = methods[:-1]
    left, right = scored[-1], scored[0] if len(scored) > 1 else methods[-1]
    sources = json.dumps({method: png_data_uri(views[method]) for method in methods})

    def options(chosen: str) -> str:
        return "".join(f'<option value="{method}"{" selected" if method == chosen else ""}>'
                       f"{html.escape(labels[method])}</option>" for method in methods)

    return _FIGURE.format(name=html.escape(name), width=width, height=height, crop=crop, zoom=ZOOM, x=x, y=y,
                          pane=crop * ZOOM, zoomed_width=width * ZOOM, zoomed_height=height * ZOOM,
                          left=options(left), right=options(right), sources=sources)


def _table(result: EvalResult) -> str:
    """The figures of evaluate.results_table: per image, the mean, the critic if run."""
    methods = result.methods
    head = "".join(f'<th colspan="3">{html.escape(result.label(method))}</th>' for method in methods)
    subhead = "<th>PSNR dB</th><th>SSIM</th><th>high-band</th>" * len(methods)
    scores = {(row.method, row.image): row for row in result.rows}
    images = dict.fromkeys(row.image for row in result.rows)
    body = []
    for image in images:
        first = scores[methods[0], image]
        cells = "".join(f"<td>{scores[method, image].psnr:.2f}</td><td>{scores[method, image].ssim:.4f}</td>"
                        f"<td>{scores[method, image].hf_ratio:.3f}</td>" for method in methods)
        body.append(f"<tr><th>{html.escape(image)}</th><td>{first.width}x{first.height}</td>{cells}</tr>")
    mean = "".join(f"<td>{result.mean[method]['psnr']:.2f}</td><td>{result.mean[method]['ssim']:.4f}</td>"
                   f"<td>{result.mean[method]['hf_ratio']:.3f}</td>" for method in methods)
    foot = [f"<tr><th>mean of {len(images)}</th><td></td>{mean}</tr>"]
    if all("critic" in result.mean[method] for method in methods):
        critic = "".join(f"<td>{result.mean[method]['critic']:.3f}</td><td>± {result.mean[method]['critic_se']:.3f}"
                         f"</td><td></td>" for method in methods)
        foot.append(f"<tr><th>critic accuracy</th><td>(0.5: real)</td>{critic}</tr>")
    return (f'<table class="metrics"><thead><tr><th rowspan="2">image</th><th rowspan="2">size</th>{head}</tr>'
            f"<tr>{subhead}</tr></thead><tbody>{''.join(body)}</tbody><tfoot>{''.join(foot)}</tfoot></table>")


_FIGURE = """<figure class="comparison" data-width="{width}" data-height="{height}" data-crop="{crop}"
 data-zoom="{zoom}" data-x="{x}" data-y="{y}">
<figcaption>{name} <span class="size">{width}x{height}</span></figcaption>
<div class="pickers"><select class="left" aria-label="left of the divider">{left}</select>
<select class="right" aria-label="right of the divider">{right}</select></div>
<div class="panels">
<div class="main">
<div class="view" style="width: {width}px">
<img class="under" alt="right method"><img class="over" alt="left method">
<div class="box"></div><div class="handle" title="drag"></div>
</div>
<input type="range" class="divider" min="0" max="1000" value="500" style="width: {width}px" aria-label="divider">
<p class="hint">drag the bar to compare; click the image to zoom there</p>
</div>
<div class="zoom">
<div class="pane" style="width: {pane}px; height: {pane}px"><img class="zoom-left" alt="left method, magnified"
 style="width: {zoomed_width}px; height: {zoomed_height}px"></div>
<div class="pane" style="width: {pane}px; height: {pane}px"><img class="zoom-right" alt="right method, magnified"
 style="width: {zoomed_width}px; height: {zoomed_height}px"></div>
<p class="hint">{crop}x{crop} px crop, x{zoom}: <span class="zoom-names"></span></p>
</div>
</div>
<script type="application/json" class="sources">{sources}</script>
</figure>"""

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }}
h1 {{ font-size: 1.3em; margin: 0 0 0.2em; }}
figure {{ margin: 1.5em 0; padding: 1em; background: #fff; border: 1px solid #ddd; }}
figcaption {{ font-weight: 600; margin-bottom: 0.5em; }}
.size, .hint, .protocol {{ color: #777; font-weight: normal; font-size: 0.9em; }}
.pickers {{ display: flex; gap: 1em; margin-bottom: 0.4em; }}
.panels {{ display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }}
.view {{ position: relative; max-width: 100%; cursor: crosshair; user-select: none; line-height: 0; }}
.view img {{ display: block; width: 100%; height: auto; }}
.view img.over {{ position: absolute; left: 0; top: 0; height: 100%; clip-path: inset(0 50% 0 0); }}
.box {{ position: absolute; outline: 1px solid #ff0; box-shadow: 0 0 0 2px rgba(0, 0, 0, 0.6); pointer-events: none; }}
.handle {{ position: absolute; top: 0; bottom: 0; left: 50%; width: 16px; margin-left: -8px; cursor: ew-resize;
  touch-action: none; }}
.handle::before {{ content: ""; position: absolute; top: 0; bottom: 0; left: 7px; width: 2px; background: #fff;
  box-shadow: 0 0 2px #000; }}
.divider {{ display: block; max-width: 100%; margin: 0.4em 0 0; }}
.zoom {{ display: flex; flex-wrap: wrap; gap: 4px; max-width: 420px; }}
.pane {{ position: relative; overflow: hidden; background: #000; }}
.pane img {{ position: absolute; max-width: none; image-rendering: pixelated; }}
.zoom .hint {{ flex-basis: 100%; margin: 0; }}
table.metrics {{ border-collapse: collapse; background: #fff; }}
.metrics th, .metrics td {{ border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }}
.metrics tbody th, .metrics tfoot th {{ text-align: left; }}
.metrics tfoot {{ font-weight: 600; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p class="protocol">{protocol}</p>
{table}
{figures}
<script>
"use strict";
for (const figure of document.querySelectorAll("figure.comparison")) setUp(figure);

function setUp(figure) {{
  const get = (selector) => figure.querySelector(selector);
  const sources = JSON.parse(get(".sources").textContent);
  const [view, over, under, box, handle, range] = [".view", ".over", ".under", ".box", ".handle", ".divider"].map(get);
  const [left, right, zoomLeft, zoomRight] = ["select.left", "select.right", ".zoom-left", ".zoom-right"].map(get);
  const {{ width, height, crop, zoom }} = Object.fromEntries(
    ["width", "height", "crop", "zoom"].map((key) => [key, Number(figure.dataset[key])]));

  function show() {{
    over.src = zoomLeft.src = sources[left.value];
    under.src = zoomRight.src = sources[right.value];
    get(".zoom-names").textContent = `${{left.selectedOptions[0].text}} | ${{right.selectedOptions[0].text}}`;
  }}
  function setDivider(fraction) {{  // 0: all right method, 1: all left method
    fraction = Math.min(1, Math.max(0, fraction));
    over.style.clipPath = `inset(0 ${{100 - 100 * fraction}}% 0 0)`;
    handle.style.left = `${{100 * fraction}}%`;
    range.value = Math.round(1000 * fraction);
  }}
  function setCrop(x, y) {{  // top-left corner in image pixels
    x = Math.min(width - crop, Math.max(0, Math.round(x)));
    y = Math.min(height - crop, Math.max(0, Math.round(y)));
    Object.assign(box.style, {{ left: `${{100 * x / width}}%`, top: `${{100 * y / height}}%`,
                               width: `${{100 * crop / width}}%`, height: `${{100 * crop / height}}%` }});
    for (const image of [zoomLeft, zoomRight]) Object.assign(image.style, {{ left: `${{-x * zoom}}px`, top: `${{-y * zoom}}px` }});
    figure.dataset.x = x;
    figure.dataset.y = y;
  }}
  const fractionAt = (event) => {{
    const rect = view.getBoundingClientRect();
    return [(event.clientX - rect.left) / rect.width, (event.clientY - rect.top) / rect.height];
  }};

  left.addEventListener("change", show);
  right.addEventListener("change", show);
  range.addEventListener("input", () => setDivider(range.value / 1000));
  let dragging = false;
  handle.addEventListener("pointerdown", (event) => {{
    dragging = true;
    handle.setPointerCapture(event.pointerId);
    event.preventDefault();
  }});
  handle.addEventListener("pointermove", (event) => {{ if (dragging) setDivider(fractionAt(event)[0]); }});
  for (const type of ["pointerup", "pointercancel"]) handle.addEventListener(type, () => {{ dragging = false; }});
  view.addEventListener("click", (event) => {{
    if (event.target === handle) return;  // the end of a drag, not a choice of crop
    const [fx, fy] = fractionAt(event);
    setCrop(fx * width - crop / 2, fy * height - crop / 2);
  }});
  show();
  setDivider(0.5);
  setCrop(Number(figure.dataset.x), Number(figure.dataset.y));
}}
</script>
</body>
</html>
"""
