"""The HTML report: self-contained, and rendered by headless Chromium without errors, showing the
leaderboard and the charts. Skips (saying why) where Chromium is not installed; CI installs it with
`apt-get install -y chromium`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_report import ladder, make_run

from tunebench.report import build_report
from tunebench.report.html import render
from tunebench.report.recommend import parse_constraints


def two_model_runs():
    """The ladder on a small model plus a bigger model, so the model-size chart appears too."""
    big = [
        make_run("zero-shot", 12, model="big", total=10_000_000, latency=90.0),
        make_run("lora", 36, model="big", trainable=40_000, total=10_000_000, steps=20, peak_mb=3000, merged=70.0),
        make_run("full", 37, model="big", trainable=10_000_000, total=10_000_000, steps=20, peak_mb=9000),
    ]  # fmt: skip
    return ladder() + big


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    data = build_report(two_model_runs(), parse_constraints(max_memory="8GB"))
    path = tmp_path_factory.mktemp("html") / "report.html"
    path.write_text(render(data), encoding="utf-8")
    return path


def test_page_is_self_contained(page):
    html = page.read_text()
    assert not re.search(r"<(link|img|iframe)\b|\bsrc=|@import|url\(", html)
    assert not re.search(r'href="(?!#)', html)  # only in-page anchors
    assert html.count("<svg") == 4 + 1 + 2  # four Pareto charts, quality by model size, two learning curves


def test_page_shows_what_the_data_says(page):
    html = page.read_text()
    assert re.search(r"Recommended: <span[^>]*></span>big · lora</div>", html)  # big · full needs 8.8 GB
    assert "Ruled out: big · full (needs 8.8 GB peak memory (--max-memory 8GB))" in html
    assert "TrainingError: the loss became nan" in html  # the failed run, with its reason
    assert "Quality by model size" in html
    assert "every trained method had a budget of 20 optimizer steps" in html


def test_model_text_is_escaped(tmp_path):
    run = make_run("lora", 2, steps=4, answers=["<script>alert(1)</script>"] + ["x"] * 39)
    other = make_run("zero-shot", 1)
    html = render(build_report([run, other]))
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--hide-scrollbars", "--enable-logging=stderr", "--v=0",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # offline, as the page must work (fetches are caught statically)
]  # fmt: skip


def _run_chromium(page: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    binary = _chromium()
    if binary is None:
        pytest.skip(
            "chromium is not installed (apt-get install -y chromium); the HTML report is not rendered"
        )
    args = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *extra, page.as_uri()]
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def test_chromium_renders_the_page_without_errors(page, tmp_path):
    done = _run_chromium(page, tmp_path, "--virtual-time-budget=3000", "--dump-dom")
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, "\n".join(console)  # the page logs nothing: no script error, no failed request
    dom = done.stdout
    assert 'data-ready="1"' in dom  # the inline script ran to its end
    assert re.search(r'<h2 id="leaderboard">Leaderboard</h2>', dom)
    assert dom.count("<tr") >= 8 and "big · lora" in dom
    assert dom.count('class="chart"') == 7 and dom.count("<circle") >= 8
    assert re.search(r'<span id="err-count">\d+</span>', dom)


def test_chromium_screenshot(page, tmp_path):
    shot = tmp_path / "report.png"
    done = _run_chromium(page, tmp_path, "--window-size=1280,2400", f"--screenshot={shot}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.exists() and shot.stat().st_size > 50_000  # a blank page compresses to a few kB
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "runs",
    [
        [make_run("lora", [], status="failed", error="OOM")],  # nothing finished
        [make_run("zero-shot", 3)],  # one method: no front to speak of, no curves, nothing to compare
    ],
    ids=["all-failed", "single-method"],
)
def test_degenerate_folders_still_render(runs):
    html = render(build_report(runs))
    assert '<h2 id="leaderboard">' in html and "data-ready" in html
    if not runs[0].ok:
        assert "No recommendation" in html and "OOM" in html


def test_charts_as_standalone_svg_files(tmp_path, capsys):
    """`report --charts DIR`: every chart of the page as its own SVG file, styled without the page, and
    parseable as XML; stdout stays the report (the chart lines go to stderr)."""
    import xml.etree.ElementTree as ET

    from test_report import write_runs

    from tunebench.cli.main import main

    root = write_runs(tmp_path / "exp", two_model_runs())
    assert main(["report", str(root), "--format", "md", "--charts", str(tmp_path / "charts")]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("# exp") and "Chart:" not in captured.out
    names = sorted(p.name for p in (tmp_path / "charts").iterdir())
    assert "quality-by-size.svg" in names and "loss-curve.svg" in names
    assert {"pareto-trainable.svg", "pareto-memory.svg"} <= set(names)
    for name in names:
        assert f"Chart: {tmp_path / 'charts' / name}" in captured.err.replace("\n", "")
        tree = ET.parse(tmp_path / "charts" / name)
        ns = "{http://www.w3.org/2000/svg}"
        assert tree.getroot().tag == f"{ns}svg"
        assert ".line { fill: none" in tree.getroot().find(f"{ns}style").text  # styled without the page
    size = (tmp_path / "charts" / "quality-by-size.svg").read_text()
    assert "lora" in size and "zero-shot" in size


def test_learning_rate_sensitivity_chart():
    """Where a method searched its learning rate, the page and --charts draw dev score against lr."""
    from tunebench.report.charts import chart_svgs
    from tunebench.report.html import selection_chart

    runs = ladder()
    lora = next(r for r in runs if r.result["method"] == "lora")
    lora.result["selection"] = {
        "search": "grid", "split": "dev", "metric": "exact_match", "seed": 0, "grid": [1e-4, 1e-3, 1e-2],
        "chosen_lr": 1e-3,
        "candidates": [
            {"lr": 1e-4, "steps": 4, "rung": 0, "dev_score": 0.2, "final_loss": 1.0, "status": "ok"},
            {"lr": 1e-3, "steps": 4, "rung": 0, "dev_score": 0.6, "final_loss": 0.5, "status": "ok"},
            {"lr": 1e-2, "steps": 4, "rung": 0, "dev_score": None, "final_loss": None, "status": "failed",
             "error": "TrainingError: the loss became nan"},
        ],
    }  # fmt: skip
    data = build_report(runs)
    chart = selection_chart(data, {e.method: "#123456" for e in data.entries})
    assert chart is not None and "Learning rate" in chart and chart.count("<circle") == 2  # failed: no point
    assert "lr-sensitivity.svg" in chart_svgs(data)
    assert "A flat line: the method hardly minds its learning rate" in render(data)
    assert selection_chart(build_report(ladder()), {}) is None  # no search, no chart
