"""The leaderboard's data step: ordering, failed runs kept with their reason."""

from __future__ import annotations

from rich.console import Console

from tunebench.report.leaderboard import render, rows


def _result(method, metric, status="ok", error=None, trained=True):
    r = {"model": "m", "method": method, "seed": 0, "status": status, "error": error}
    if status == "ok":
        r |= {
            "primary_metric": "exact_match",
            "metrics": {"exact_match": metric},
            "ci95": [metric - 0.1, metric + 0.1],
            "params": {
                "trainable": 1000 if trained else 0,
                "total": 2000,
                "trainable_pct": 50.0 if trained else 0,
            },
            "train": {"seconds": 12.0, "tokens_per_s": 300.0, "peak_rss_mb": 900.0} if trained else None,
            "eval": {"peak_rss_mb": 700.0},
        }
    return r


def test_rows_best_first_and_failed_last():
    table = rows(
        [
            _result("a", 0.2),
            _result("b", None, "failed", "ValueError: boom"),
            _result("c", 0.7, trained=False),
        ]
    )
    assert [r.method for r in table] == ["c", "a", "b"]
    assert table[2].error == "ValueError: boom"
    assert table[1].peak_mb == 900.0  # the larger of training and evaluation peaks
    assert table[0].train_seconds == 0.0 and table[0].peak_mb == 700.0


def test_render_shows_metric_ci_and_failure_reason():
    console = Console(width=140, record=True)
    console.print(
        render(rows([_result("lora", 0.65), _result("full", None, "failed", "TrainingError: NaN")]))
    )
    text = console.export_text()
    assert "65.0%" in text and "55.0%–75.0%" in text
    assert "failed" in text and "TrainingError: NaN" in text
    assert "1.0k (50%)" in text
