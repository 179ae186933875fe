import json

import matplotlib
import pytest

from srgan_noise.base.errors import UserError
from srgan_noise.evaluation.plot import monitor_figure, plot_run
from srgan_noise.training.monitor import read_metrics


def _record(step, phase, index):
    record = {"step": step, "phase": phase, "loss_content": 0.01, "loss_pixel": 0.01,
              "val_ssim": 0.8 + 0.01 * index, "val_mse": 50.0 - index, "val_psnr": 28.0 + 0.1 * index,
              "val_hf_ratio": 0.5 + 0.05 * index}
    if phase == "gan":
        record |= {"d_real": 0.7, "d_fake": 0.3, "d_fake_next": 0.3}  # D(fake) == D_t(G_{t+1})
    return record


def _run(tmp_path, pretrain_steps, gan_steps, every=25):
    run = tmp_path / "run"
    run.mkdir()
    steps = [("pretrain", s) for s in range(every, pretrain_steps + 1, every)]
    steps += [("gan", pretrain_steps + s) for s in range(every, gan_steps + 1, every)]
    lines = [json.dumps(_record(step, phase, index)) for index, (phase, step) in enumerate(steps)]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return run


def _d_lines(figure):
    return {line.get_label(): line for line in figure.axes[0].get_lines()}


def test_plot_run_smoke(tmp_path):
    run = _run(tmp_path, 300, 200)
    assert plot_run(run) == run / "monitor.png"
    assert (run / "monitor.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_one_gan_window_draws_markers(tmp_path):
    figure = monitor_figure(read_metrics(_run(tmp_path, 300, 25)), "run")
    lines = _d_lines(figure)
    assert len(lines) == 3
    for line in lines.values():
        assert len(line.get_xdata()) == 1 and line.get_marker() == "o" and line.get_markersize() > 0


def test_d_fake_is_drawn_above_d_fake_next(tmp_path):
    figure = monitor_figure(read_metrics(_run(tmp_path, 100, 100)), "run")
    lines = _d_lines(figure)
    red, orange = lines["D(fake)"], lines["D$_t$(G$_{t+1}$)"]
    assert matplotlib.colors.same_color(red.get_color(), "tab:red")
    assert red.get_zorder() > orange.get_zorder()
    assert red.get_linewidth() < orange.get_linewidth()  # the orange band shows around the red line
    legend = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert legend == ["D(real)", "D(fake)", "D$_t$(G$_{t+1}$)"]


def test_panels_share_the_step_axis(tmp_path):
    figure = monitor_figure(read_metrics(_run(tmp_path, 300, 200)), "run")
    assert len(figure.axes) == 5
    limits = {axis.get_xlim() for axis in figure.axes}
    assert len(limits) == 1
    low, high = limits.pop()
    assert low <= 25 and high >= 500  # the whole run, pre-training included
    gan_steps = _d_lines(figure)["D(real)"].get_xdata()
    assert min(gan_steps) == 325 and max(gan_steps) == 500  # D curves over the GAN phase alone


def test_plot_run_exception(tmp_path):
    with pytest.raises(UserError, match="no metrics.jsonl with records to plot"):
        plot_run(tmp_path)
