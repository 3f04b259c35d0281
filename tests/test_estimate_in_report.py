"""The estimator inside a comparison's report: estimate beside measurement, and the cost at a target size."""

from __future__ import annotations

import json

import pytest
from test_report import make_run, write_runs

from tunebench.cli.main import main
from tunebench.core.errors import TunebenchError
from tunebench.estimate.in_report import CALIBRATION_COLUMN, InReport
from tunebench.report import build_report


def smollm_runs():
    """SmolLM2-135M results as the runner writes them: method options and a budget the estimator reads."""
    runs = []
    for method, n, trainable, options in (
        ("zero-shot", 2, 0, {}),
        ("lora", 30, 4_884_480, {"r": 16, "alpha": 32, "target_modules": "all-linear"}),
        ("full", 31, 134_515_008, {}),
    ):
        run = make_run(method, n, model="smollm2-135m", trainable=trainable, total=134_515_008,
                       steps=80 if trainable else None, peak_mb=2500 if method == "lora" else 3500)  # fmt: skip
        run.result["config"]["method"] = {"name": method, **options}
        run.result["config"]["budget"].update(batch_size=32, max_length=64, grad_accum=1, eval_batch_size=100)
        if run.result["train"]:
            run.result["train"].update(examples=2560, tokens=2560 * 16, target_tokens=2560 * 4, bf16=False)
        runs.append(run)
    return runs


def test_target_column_and_sentence_say_what_fits_at_scale():
    estimates = InReport("7B", "A100-80GB")
    report = build_report(smollm_runs(), columns=estimates.columns())
    estimates.add_sentence(report)
    column = "at 7B · A100-80GB"
    assert report.columns == [CALIBRATION_COLUMN, column]
    cells = {e.method: e.extra.get(column) for e in report.entries}
    # full fine-tuning of 6.7B weights with Adam in mixed precision needs ~16 bytes a weight: over 80 GiB
    assert cells["full"].endswith("✗") and cells["lora"].endswith("✓")
    assert int(cells["full"].split()[0].replace(",", "")) > 100
    sentence = report.recommendation.at_scale
    assert sentence.startswith("At 7B on A100-80GB") and "full would need" in sentence
    assert "lora would need" in sentence and "(fits)" in sentence


def test_calibration_column_sits_beside_the_measured_peak():
    report = build_report(smollm_runs(), columns=InReport().columns())
    cells = {e.method: e.extra.get(CALIBRATION_COLUMN) for e in report.entries}
    assert cells["zero-shot"] is None  # nothing trained: the column is about training peaks
    for method in ("lora", "full"):
        value, unit = cells[method].split()
        assert unit in ("MB", "GB") and float(value) > 0
    assert report.recommendation.at_scale == ""  # no target: no sentence


def test_unknown_target_names_the_flag_and_close_matches():
    with pytest.raises(TunebenchError, match=r"--target-model '7Bx'.*Did you mean '7B'"):
        InReport("7Bx")
    with pytest.raises(TunebenchError, match=r"--target-device 'A100-80'.*Did you mean"):
        InReport("7B", "A100-80")


def test_report_command_with_a_target(tmp_path, capsys):
    root = write_runs(tmp_path / "exp", smollm_runs())
    assert (
        main(["report", str(root), "--format", "json", "--target-model", "70B", "--target-device", "H100"])
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["columns"] == [CALIBRATION_COLUMN, "at 70B · H100-80GB"]
    assert data["recommendation"]["at_scale"].startswith("At 70B on H100-80GB")
    assert main(["report", str(root), "--target-model", "7Bx"]) == 2
    assert "--target-model '7Bx'" in capsys.readouterr().err


def test_compare_refuses_an_unknown_target_before_running(tmp_path, capsys):
    code = main(["compare", "--model", "tiny-llama", "--methods", "zero-shot", "--out", str(tmp_path),
                 "--target-model", "7Bx"])  # fmt: skip
    assert code == 2 and "Did you mean '7B'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
