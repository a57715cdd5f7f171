"""Progress where it goes: plain periodic lines into a file or pipe, tqdm in a terminal,
and a training result's notebook view (steps, final loss, an inline SVG curve)."""

from __future__ import annotations

import io
from pathlib import Path

from tinkerkit.train.display import result_html, sparkline_svg
from tinkerkit.train.metrics import MetricsLogger
from tinkerkit.train.progress import LineProgress, progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_pipe_gets_whole_lines_not_carriage_returns() -> None:
    out = io.StringIO()
    bar = progress_bar(100, desc="training", unit="step", file=out, interval=3600)
    assert isinstance(bar, LineProgress)
    for step in range(100):
        bar.set_postfix(loss=f"{1 / (step + 1):.4f}")
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    # The first update at once, then none within the interval, and the end.
    assert len(lines) == 2, lines
    assert lines[0].startswith("training: 1/100 step (1%)") and lines[0].endswith("loss=1.0000")
    assert lines[1].startswith("training: 100/100 step (100%)") and "loss=0.0100" in lines[1]


def test_lines_come_every_interval() -> None:
    out = io.StringIO()
    bar = LineProgress(3, desc="merge", initial=1, file=out, interval=0)
    bar.update(1)
    bar.update(1)
    bar.close()
    assert out.getvalue().splitlines()[0].startswith("merge: 2/3 it")
    assert len(out.getvalue().splitlines()) == 2  # close adds nothing new


def test_a_terminal_gets_tqdm() -> None:
    out = _Terminal()
    bar = progress_bar(5, desc="training", file=out)
    bar.update(5)
    bar.close()
    assert not isinstance(bar, LineProgress)
    assert "\r" in out.getvalue() and "5/5" in out.getvalue()


def test_training_progress_into_a_file_is_lines(tmp_path: Path, capsys) -> None:
    logger = MetricsLogger(tmp_path, 3, progress=True)
    for step in (1, 2, 3):
        logger.log({"step": step, "loss": 3.0 - step})
    logger.close()
    err = capsys.readouterr().err
    assert "\r" not in err
    assert err.splitlines()[-1].startswith("training: 3/3 step (100%)"), err


def test_a_result_shows_steps_final_loss_and_a_curve() -> None:
    rows = [{"step": s, "loss": 4.0 / s, "reward_mean": s / 10} for s in range(1, 6)]
    html = result_html("RL", steps=5, log_dir="runs/r", sampler_path="tinker://x", metrics=rows)
    assert "RL result" in html and '<td style="text-align:left">5</td>' in html
    assert 'final loss</th><td style="text-align:left">0.8000</td>' in html
    assert "0.1000 → 0.5000" in html  # mean reward, first → last
    assert html.count("<svg") == 2


def test_the_curve_spans_the_box() -> None:
    svg = sparkline_svg([3.0, 2.0, 1.0], label="loss")
    points = svg.split('points="')[1].split('"')[0].split()
    ys = [float(p.split(",")[1]) for p in points]
    assert ys[0] < ys[-1]  # the falling loss drawn from the top down
    assert "loss: 3 → 1 over 3 points" in svg
