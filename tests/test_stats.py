"""The leaderboard's statistics (report/stats.py) on constructed predictions whose answer is known: the
two-level interval, the paired tests against the best, Holm's correction, the detectable difference,
budget-limited marks, and every format carrying them."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from test_report import make_run

from tunebench.report import build_report, stats
from tunebench.report.formats import to_csv, to_json, to_markdown
from tunebench.report.html import render as render_html
from tunebench.report.recommend import parse_constraints
from tunebench.report.table import leaderboard

ITEMS = 1000


def right_on(items: range | list[int] | set[int], n: int = ITEMS) -> list[bool]:
    chosen = set(items)
    return [i in chosen for i in range(n)]


def by_method(runs) -> dict:
    return {e.method: e for e in leaderboard(runs)}


def old_interval(rows: list[list[bool]]) -> tuple[float, float]:
    """The interval the report used before: items resampled from the seed-averaged score."""
    per_item = np.asarray(rows, dtype=float).mean(axis=0)
    idx = np.random.default_rng(0).integers(0, per_item.size, size=(2000, per_item.size))
    lo, hi = np.percentile(per_item[idx].mean(axis=1), [2.5, 97.5])
    return float(lo), float(hi)


# -- the three cases of the issue ---------------------------------------------------------------------


def test_a_consistent_loss_on_the_same_items_is_not_a_tie():
    """full right on 600 of 1,000; lora right on 570 of those same items (loses 30, wins none)."""
    entries = by_method([make_run("full", right_on(range(600))), make_run("lora", right_on(range(570)))])
    full, lora = entries["full"], entries["lora"]
    assert full.best and not lora.tied
    assert lora.test == stats.MCNEMAR and lora.p_value == pytest.approx(2 * 0.5**30)
    assert lora.diff_vs_best == pytest.approx(-0.03)
    lo, hi = lora.diff_ci95
    assert lo < -0.02 and hi < 0  # every resample of the shared items has lora behind
    # the old rule, unpaired 95% intervals overlapping, would have called it a tie
    assert full.ci95[0] <= lora.ci95[1] and lora.ci95[0] <= full.ci95[1]


def test_seed_variance_widens_the_interval():
    """Three seeds at 30%, 60% and 90% against 60% on every seed: the first is far less certain."""
    varied = [right_on([i for i in range(ITEMS) if i % 10 < k]) for k in (3, 6, 9)]
    steady = [right_on([i for i in range(ITEMS) if i % 10 < 6])] * 3
    runs = [make_run("varied", c, seed=s) for s, c in enumerate(varied)]
    runs += [make_run("steady", c, seed=s) for s, c in enumerate(steady)]
    entries = by_method(runs)
    width = {m: e.ci95[1] - e.ci95[0] for m, e in entries.items()}
    assert entries["varied"].mean == pytest.approx(0.6) and entries["steady"].mean == pytest.approx(0.6)
    assert width["varied"] > 4 * width["steady"]
    old = {"varied": old_interval(varied), "steady": old_interval(steady)}
    assert old["varied"][1] - old["varied"][0] < old["steady"][1] - old["steady"][0]  # backwards before


def test_a_genuine_tie_is_tied_with_a_large_p():
    """The two differ on 10 items each way."""
    entries = by_method([make_run("a", right_on(range(600))), make_run("b", right_on(range(10, 610)))])
    other = next(e for e in entries.values() if not e.best)
    assert other.tied and other.test == stats.MCNEMAR
    assert other.p_value == 1.0 and other.diff_vs_best == pytest.approx(0.0)


def test_several_seeds_use_the_paired_bootstrap():
    """Each seed of b misses 30 items a gets (the seeds vary a little): a clear difference whose unpaired
    intervals overlap; and a pair that differs 10 items each way on every seed is tied."""
    rng = np.random.default_rng(1)
    runs, tied = [], []
    for seed in range(3):
        base = set(range(600)) ^ set(rng.choice(ITEMS, 20, replace=False).tolist())
        runs += [make_run("a", right_on(base), seed=seed)]
        runs += [make_run("b", right_on(sorted(base)[30:]), seed=seed)]
        tied += [make_run("c", right_on(base), seed=seed)]
        tied += [make_run("d", right_on((base - set(sorted(base)[:10])) | set(range(900, 910))), seed=seed)]
    entries = by_method(runs)
    assert entries["b"].test == stats.PAIRED_BOOTSTRAP and entries["b"].p_value <= 0.001
    assert not entries["b"].tied and entries["a"].ci95[0] < entries["b"].ci95[1]
    ties = by_method(tied)
    other = next(e for e in ties.values() if not e.best)
    assert other.tied and other.p_value > 0.5


# -- the pieces ---------------------------------------------------------------------------------------


def test_mcnemar_exact_on_known_tables():
    assert stats.mcnemar_exact(1, 9) == pytest.approx(22 / 1024)  # 2 · (C(10,0) + C(10,1)) / 2^10
    assert stats.mcnemar_exact(9, 1) == stats.mcnemar_exact(1, 9)
    assert stats.mcnemar_exact(0, 0) == 1.0 and stats.mcnemar_exact(5, 5) == 1.0
    assert stats.mcnemar_exact(0, 6) == pytest.approx(2 / 64) and stats.mcnemar_exact(0, 5) > 0.05
    assert 0 < stats.mcnemar_exact(0, 3000) < 1e-300 or stats.mcnemar_exact(0, 3000) == 0.0


def test_holm_on_known_p_values():
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])  # 4·.005, 3·.01, max(2·.03, 1·.04)
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert stats.holm([]) == []


def test_holm_decides_the_ties():
    """6 items one way, none the other: p = 2 · 2^-6 = 0.031, distinguishable alone; beside another such
    comparison and a clear one, Holm makes both 2 · 0.031 = 0.0625: tied."""
    runs = [
        make_run("best", right_on(range(600))),
        make_run("far", right_on(range(582))),
        make_run("six", right_on(range(594))),
        make_run("six-too", right_on(range(6, 600))),
    ]
    entries = by_method(runs)
    for name in ("six", "six-too"):
        assert entries[name].p_value == pytest.approx(2 * 0.5**6) and entries[name].p_value < 0.05
        assert entries[name].p_adjusted == pytest.approx(2 * 2 * 0.5**6) and entries[name].tied
    assert entries["far"].p_adjusted == pytest.approx(3 * 2 * 0.5**18) and not entries["far"].tied
    alone = by_method(runs[:1] + runs[2:3])
    assert not alone["six"].tied and alone["six"].p_adjusted == pytest.approx(2 * 0.5**6)


def test_bootstrap_p():
    # no resample reaches 0: the tail extrapolated by the normal approximation, 2·Φ(-5) = 5.7e-7, not 1/B
    d = np.random.default_rng(0).normal(0.05, 0.01, 2000)
    assert stats.bootstrap_p(d) == pytest.approx(5.7e-7, rel=0.5)
    assert stats.bootstrap_p(np.full(2000, 0.01)) == 0.0  # every resample the same difference
    assert stats.bootstrap_p(np.zeros(2000)) == 1.0
    d = np.concatenate([np.full(100, -0.01), np.full(1900, 0.01)])
    assert stats.bootstrap_p(d) == pytest.approx(0.1)


def test_min_detectable_difference_on_a_known_case():
    # (1.959964 + 0.841621) · √(0.1 / 1000)
    assert stats.min_detectable_diff(1000, 0.1) == pytest.approx(0.0280158, abs=1e-6)
    assert stats.min_discordant() == 6  # 2 · 2^-5 = 0.0625, 2 · 2^-6 = 0.031
    assert stats.min_detectable_diff(1000, 0.0001) == pytest.approx(0.006)  # never under 6 items


def test_min_detectable_difference_has_about_80_percent_power():
    """Simulate paired items with 10% discordance and the difference the formula gives: McNemar's
    normal test detects it in about 80% of test sets (a little more, since the formula errs large)."""
    n, q = 1000, 0.1
    delta = stats.min_detectable_diff(n, q)
    rng = np.random.default_rng(0)
    counts = rng.multinomial(n, [(q + delta) / 2, (q - delta) / 2, 1 - q], size=4000)
    b, c = counts[:, 0], counts[:, 1]
    z = (b - c) / np.sqrt(b + c)
    power = float(np.mean(np.abs(z) > 1.959964))
    assert 0.78 < power < 0.88


def test_the_report_states_the_detectable_difference():
    data = build_report([make_run("full", right_on(range(600))), make_run("lora", right_on(range(570)))])
    assert data.test_items == ITEMS and data.comparisons == 1
    assert data.min_detectable_diff == pytest.approx(stats.min_detectable_diff(ITEMS, 0.03))
    assert "full and lora answer 3.0% of the items differently" in data.detectable_basis


def test_one_seed_says_seed_variance_is_unknown_in_every_format():
    data = build_report([make_run("full", right_on(range(600))), make_run("lora", right_on(range(570)))])
    note = "seed variance is unknown"
    assert any(note in n for n in data.statistics_notes)
    assert note in to_markdown(data) and note in render_html(data)
    assert any(note in n for n in json.loads(to_json(data))["statistics_notes"])


def test_inputs_that_differ_are_compared_unpaired_and_said_so():
    a, b = make_run("a", right_on(range(600))), make_run("b", right_on(range(570)))
    for row in b.predictions:
        row["input"] = "other " + row["input"]
    data = build_report([a, b])
    other = data.entries[1]
    assert other.test == stats.UNPAIRED and other.p_value > 0.05 and other.tied  # the weaker test
    assert any("compared unpaired" in n for n in data.statistics_notes)
    b.predictions = None  # no predictions at all: the recorded interval, still an unpaired test
    b.result["ci95"] = [0.54, 0.60]
    e = leaderboard([a, b])[1]
    assert e.ci95 == (0.54, 0.60) and e.test == stats.UNPAIRED and e.p_value is not None


def test_results_are_deterministic_and_independent_of_other_entries():
    runs = [make_run("full", right_on(range(600)), seed=s) for s in (0, 1)]
    runs += [make_run("lora", right_on(range(560 + 10 * s)), seed=s) for s in (0, 1)]
    first, second = by_method(runs), by_method(list(reversed(runs)))
    assert first["lora"].ci95 == second["lora"].ci95 and first["lora"].p_value == second["lora"].p_value
    alone = by_method([*runs[:2], make_run("zero-shot", right_on(range(10)))])
    assert alone["full"].ci95 == first["full"].ci95


def test_item_resamples_are_shared_across_methods_and_chunks():
    """5,000 items: the resamples are drawn in chunks (200 at a time); two methods with the same answers
    get the same bootstrap, so their paired difference is exactly zero (p = 1), and a method's bootstrap
    does not depend on the others drawn with it."""
    scores = np.array([right_on(range(3000), 5000)], dtype=np.float32)
    shifted = np.array([right_on(range(10, 3010), 5000)], dtype=np.float32)
    boots = stats.two_level_bootstrap({"a": scores, "b": scores.copy(), "c": shifted})
    assert np.array_equal(boots["a"], boots["b"]) and stats.bootstrap_p(boots["a"] - boots["b"]) == 1.0
    assert np.array_equal(stats.two_level_bootstrap({"c": shifted})["c"], boots["c"])
    lo, hi = np.percentile(boots["a"], [2.5, 97.5])
    assert lo < 0.6 < hi and hi - lo == pytest.approx(2 * 1.96 * (0.24 / 5000) ** 0.5, rel=0.15)


def test_compare_any_pair_from_runs():
    c = stats.compare([make_run("a", right_on(range(570)))], [make_run("b", right_on(range(600)))])
    assert c.test == stats.MCNEMAR and c.discordant == (0, 30) and c.diff == pytest.approx(-0.03)
    several = stats.compare(
        [make_run("a", right_on(range(570)), seed=s) for s in (0, 1)],
        [make_run("b", right_on(range(600)), seed=s) for s in (0, 1)],
    )
    assert several.test == stats.PAIRED_BOOTSTRAP and several.p_value < 0.01
    with pytest.raises(ValueError, match="same test items"):
        stats.compare([make_run("a", right_on(range(5), 10))], [make_run("b", right_on(range(5), 20))])


def test_nothing_is_compared_when_every_method_scores_zero():
    entries = leaderboard([make_run("a", right_on([])), make_run("b", right_on([]))])
    assert not any(e.best or e.tied for e in entries)
    assert all(e.diff_vs_best is None and e.p_value is None for e in entries)


# -- the recommendation --------------------------------------------------------------------------------


def three_methods():
    """full far ahead but memory-hungry; lora and adapter indistinguishable (5 items each way)."""
    return [
        make_run("full", right_on(range(700)), trainable=1000, steps=10, peak_mb=8000),
        make_run("lora", right_on(range(600)), trainable=10, steps=10, peak_mb=1000),
        make_run("adapter", right_on(list(range(5, 605))), trainable=12, steps=10, peak_mb=1000),
    ]


def test_runners_up_come_from_the_test_against_the_recommended_method():
    data = build_report(three_methods(), parse_constraints(max_memory="2GB"))
    rec = data.recommendation
    entries = {e.method: e for e in data.entries}
    assert not entries["adapter"].tied  # far from the best (full) ...
    assert rec.best.method == "lora"
    assert [e.method for e in rec.runners_up] == ["adapter"]  # ... but tied with lora
    versus = rec.versus["adapter"]
    assert versus.test == stats.MCNEMAR and versus.discordant == (5, 5) and versus.p_adjusted == 1.0
    assert set(rec.versus) == {"adapter"}  # the family: what fits, besides the recommended one


def test_the_recommendation_says_when_the_named_methods_cannot_be_told_apart():
    data = build_report(three_methods()[1:])
    points = f"{100 * data.min_detectable_diff:.1f}"
    why = data.recommendation.why
    assert f"differences under {points} points cannot be told apart on 1,000 test items" in why
    clear = build_report([make_run("full", right_on(range(700))), make_run("lora", right_on(range(600)))])
    why = clear.recommendation.why
    assert "cannot be told apart" not in why and "beyond the noise" in why


# -- budget-limited runs ---------------------------------------------------------------------------------


def budget_runs():
    lora = [make_run("lora", right_on(range(600)), seed=s, trainable=10, steps=10) for s in (0, 1)]
    lora[1].result["train"]["convergence"] = {
        "still_improving": True, "evidence": "dev curve", "detail": "dev 0.6 at step 10 against 0.4",
    }  # fmt: skip
    lora[0].result["train"]["convergence"] = {"still_improving": False, "evidence": "dev curve", "detail": ""}
    full = make_run("full", right_on(range(590)), trainable=1000, steps=10)
    full.result["train"]["early_stopping"] = {"stopped_at": 6, "best_step": 4, "restored": True}
    return [*lora, full, make_run("zero-shot", right_on(range(100)))]


def test_budget_limited_and_early_stopped_seeds_are_counted():
    entries = by_method(budget_runs())
    assert entries["lora"].budget_limited and entries["lora"].stopped_early == 0
    assert entries["lora"].convergence == ["seed 1: dev 0.6 at step 10 against 0.4"]
    assert not entries["full"].budget_limited and entries["full"].stopped_early == 1
    assert not entries["zero-shot"].budget_limited and entries["zero-shot"].stopped_early == 0  # unknown


def test_budget_limited_is_marked_in_every_format_and_the_recommendation():
    from rich.console import Console

    from tunebench.report.terminal import render as render_terminal

    data = build_report(budget_runs())
    assert data.recommendation.why.endswith(
        "lora was still improving when its budget ran out: a longer budget may change the ranking."
    )
    md = to_markdown(data)
    assert "| lora **best** † |" in md
    assert "†: still improving when its budget ran out (budget-limited)." in md
    rows = {r["method"]: r for r in csv.DictReader(io.StringIO(to_csv(data)))}
    assert rows["lora"]["budget_limited"] == "True" and rows["full"]["stopped_early_seeds"] == "1"
    raw = {e["method"]: e for e in json.loads(to_json(data))["entries"]}
    assert raw["lora"]["budget_limited"] is True and raw["full"]["stopped_early"] == 1
    html = render_html(data)
    assert "† budget-limited" in html and "1 stopped early" in html
    console = Console(width=80, record=True, color_system=None)
    console.print(render_terminal(data))
    text = console.export_text()
    assert "lora ★ †" in text and "† still improving when its budget ran out" in text


# -- formats -------------------------------------------------------------------------------------------


def test_formats_carry_the_comparisons():
    data = build_report([make_run("full", right_on(range(600))), make_run("lora", right_on(range(570)))])
    lora = data.entries[1]
    table = {r["method"]: r for r in csv.DictReader(io.StringIO(to_csv(data)))}
    assert float(table["lora"]["diff_vs_best"]) == pytest.approx(-0.03)
    assert float(table["lora"]["p_value"]) == pytest.approx(2 * 0.5**30)
    assert float(table["lora"]["diff_ci95_low"]) == pytest.approx(lora.diff_ci95[0])
    assert table["lora"]["test"] == "McNemar exact" and table["lora"]["tied_with_best"] == "False"
    assert table["full"]["diff_vs_best"] == "0.0" and table["full"]["p_value"] == ""

    raw = json.loads(to_json(data))
    entry = raw["entries"][1]
    assert entry["p_adjusted"] == pytest.approx(2 * 0.5**30) and entry["diff_ci95"] == list(lora.diff_ci95)
    assert "sample" not in entry and raw["min_detectable_diff"] == pytest.approx(data.min_detectable_diff)
    assert raw["test_items"] == ITEMS and raw["comparisons"] == 1

    md = to_markdown(data)
    assert "| Δ vs best (95% CI) | p (Holm) |" in md
    lo, hi = (f"{100 * x:+.1f}".replace("-", "−") for x in lora.diff_ci95)
    assert f"| −3.0 ({lo}, {hi}) | <0.001 |" in md
    assert "Holm-corrected over 1 comparison with the best" in md
    assert "≈: not distinguishable from the best by a paired test (Holm-corrected, α = 0.05)." in md
    points = f"{100 * stats.min_detectable_diff(ITEMS, 0.03):.1f}"
    assert f"Differences under {points} points cannot be told apart on 1,000 test items" in md

    html = render_html(data)
    assert "Δ vs best (95% CI)" in html and f"−3.0 ({lo}, {hi})" in html and "&lt;0.001" in html
    assert "two-level bootstrap over seeds and test items" in html
