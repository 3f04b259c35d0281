"""The leaderboard's statistics: each method's interval, and whether it can be told apart from another.

Pure functions of per-item 0/1 scores (rows: seeds, columns: test items). docs/statistics.md has the
formulas and the reasons; in short:

interval        a two-level bootstrap: resample the seeds, then the test items (the same items for every
                seed of a resample), so both training noise and the size of the test set widen it.
paired test     every method is scored on the same items, so a comparison resamples the items jointly for
                both methods (and each method's seeds on their own): with one seed each, McNemar's exact
                test on the items only one of them got right; with several, a paired bootstrap.
Holm            the k-1 comparisons with the best are one family; Holm's step-down keeps the chance of any
                false "distinguishable" at 5%.
detectable      the smallest difference a paired test on these items detects with 80% power.

Every bootstrap in a report draws its item resamples once per test-set size, shared by all methods
(`item_resample_means`), and each method's resampled means are computed once (`Sample.boot`): a
comparison is then a subtraction of two cached vectors, whatever pair the report asks for.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import zlib
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from tunebench.report.load import RunData

#: Significance level of every test, and the power of the detectable difference.
ALPHA = 0.05
POWER = 0.80
#: Bootstrap resamples: with 2,000, the Monte Carlo error of an interval's end is about 0.1 point on 1,000
#: items (0.2 on 200), below the digit the report prints.
N_RESAMPLES = 2000
SEED = 0
_Z95 = NormalDist().inv_cdf(0.975)

#: Names of the tests, as the report shows them.
MCNEMAR = "McNemar exact"
PAIRED_BOOTSTRAP = "paired bootstrap"
UNPAIRED = "unpaired z"


class Scored(Protocol):
    """What a comparison needs of a leaderboard entry (table.Entry has these)."""

    mean: float | None
    ci95: tuple[float, float] | None
    sample: Sample | None


@dataclass(eq=False)
class Sample:
    """One method's per-item scores and its two-level bootstrap distribution of the mean."""

    scores: np.ndarray
    """(seeds, items) 0/1, float32."""
    inputs: str | None
    """Digest of the test inputs in order; None when the predictions do not record them."""
    boot: np.ndarray
    """(resamples,) mean score in each bootstrap resample."""

    @property
    def seeds(self) -> int:
        return int(self.scores.shape[0])

    @property
    def items(self) -> int:
        return int(self.scores.shape[1])

    def interval(self) -> tuple[float, float]:
        lo, hi = np.percentile(self.boot, [2.5, 97.5])
        return float(lo), float(hi)


@dataclass
class Comparison:
    """`a` against `b`: the difference of their means (a minus b, in metric units 0..1) and its test."""

    diff: float
    ci95: tuple[float, float] | None
    p_value: float | None
    test: str | None
    """MCNEMAR, PAIRED_BOOTSTRAP, UNPAIRED, or None when neither has anything to test with."""
    discordant: tuple[int, int] | None = None
    """(items only a got right, items only b got right), for McNemar."""
    p_adjusted: float | None = None
    """After Holm's correction over the comparisons of one family (`holm_adjust`)."""

    @property
    def paired(self) -> bool:
        return self.test in (MCNEMAR, PAIRED_BOOTSTRAP)

    @property
    def distinguishable(self) -> bool:
        p = self.p_adjusted if self.p_adjusted is not None else self.p_value
        return p is not None and p < ALPHA


# -- resampling ------------------------------------------------------------------------------------------


def _counts(draws: int, size: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, size) float32: how often each of `size` things is drawn in `draws` draws with replacement,
    one row per resample (a bincount of offset indices: no Python loop over resamples)."""
    idx = rng.integers(0, size, size=(resamples, draws)) + np.arange(resamples)[:, None] * size
    return np.bincount(idx.ravel(), minlength=resamples * size).reshape(resamples, size).astype(np.float32)


def item_resample_means(
    scores: list[np.ndarray], resamples: int = N_RESAMPLES, seed: int = SEED
) -> list[np.ndarray]:
    """For score matrices (seeds × items) on the same n items: each seed's mean score in each item resample,
    one (resamples, seeds) array per matrix.

    The item resamples depend on (n, resamples, seed) only and are shared by every matrix: every method
    scored on these items sees the same resampled items, which is what pairs the comparisons. They are
    drawn in chunks of about 1M counts (under 30 MB of scratch memory, whatever the size of the test set)
    and applied to all the matrices at once (one matrix product per chunk)."""
    n = scores[0].shape[1]
    stacked = np.concatenate(scores).T  # (n, all seeds of all matrices)
    rng = np.random.default_rng([seed, n])
    means = np.empty((resamples, stacked.shape[1]))
    chunk = max(1, 1_000_000 // n)
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        # float32 products of counts and 0/1 scores are exact integers (below 2^24); divide in float64
        means[start : start + rows] = (_counts(n, n, rows, rng) @ stacked).astype(np.float64) / n
    bounds = np.cumsum([0] + [m.shape[0] for m in scores])
    return [means[:, lo:hi] for lo, hi in itertools.pairwise(bounds)]


def resample_seeds(per_seed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Second level of the bootstrap: from each seed's mean on an item resample (resamples × seeds), the
    mean over seeds drawn with replacement. With one seed, the plain item bootstrap.

    One item resample serves every seed of a bootstrap resample, rather than one per seed, because the
    seeds were scored on one test set: the items are a single draw from the population, shared by the
    seeds. Independent item draws per seed would average that draw's noise away over the seeds and make
    the interval too narrow. (Resampling both levels counts the seed × item interaction twice, so the
    interval errs slightly wide: the safe side.)"""
    resamples, seeds = per_seed.shape
    if seeds == 1:
        return per_seed[:, 0].copy()
    picks = _counts(seeds, seeds, resamples, rng)  # how often each seed is drawn in each resample
    return (per_seed * picks).sum(axis=1) / seeds


def two_level_bootstrap(
    scores: dict[str, np.ndarray], resamples: int = N_RESAMPLES, seed: int = SEED
) -> dict[str, np.ndarray]:
    """Key → bootstrap distribution of the mean of its score matrix (seeds × items). Matrices with the same
    number of items share their item resamples. Each key seeds its own seed resampling (a hash of the
    key), so a method's interval does not depend on which other methods are in the report."""
    by_size: dict[int, list[str]] = {}
    for key, m in scores.items():
        by_size.setdefault(m.shape[1], []).append(key)
    out = {}
    for keys in by_size.values():
        per_seed = item_resample_means([scores[k] for k in keys], resamples, seed)
        for key, means in zip(keys, per_seed, strict=True):
            out[key] = resample_seeds(means, np.random.default_rng([seed, zlib.crc32(key.encode())]))
    return out


def _inputs_digest(predictions: list[list[dict]]) -> str | None:
    """A digest of the test inputs in order, when every seed recorded them and they agree."""
    digests = set()
    for rows in predictions:
        if any("input" not in r for r in rows):
            return None
        digests.add(hashlib.sha1("\0".join(str(r["input"]) for r in rows).encode()).hexdigest())
    return digests.pop() if len(digests) == 1 else None


def samples(groups: dict[str, list[RunData]], seed: int = SEED) -> dict[str, Sample | None]:
    """Key (an entry's model and method) → the Sample of its finished runs, or None when a run lacks its
    predictions or the seeds' prediction counts differ (the report then shows the recorded interval)."""
    scores: dict[str, np.ndarray] = {}
    inputs: dict[str, str | None] = {}
    for key, runs in groups.items():
        rows = [r.predictions for r in runs if r.predictions is not None]
        if not rows or len(rows) != len(runs) or len({len(p) for p in rows}) != 1 or not rows[0]:
            continue
        scores[key] = np.array([[bool(x.get("correct")) for x in p] for p in rows], dtype=np.float32)
        inputs[key] = _inputs_digest(rows)
    boots = two_level_bootstrap(scores, seed=seed)
    return {key: Sample(scores[key], inputs[key], boots[key]) if key in scores else None for key in groups}


# -- tests -----------------------------------------------------------------------------------------------


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p: under no difference each discordant item is a fair coin, so the count
    of one kind is Binomial(only_a + only_b, 1/2); p doubles the smaller tail (at most 1)."""
    m, k = only_a + only_b, min(only_a, only_b)
    if m == 0:
        return 1.0
    tail = sum(math.comb(m, i) for i in range(k + 1))  # exact integers: no underflow before the division
    return min(1.0, 2 * tail / 2**m)


def bootstrap_p(d: np.ndarray) -> float:
    """Two-sided bootstrap p of a difference: 2 · min(P(d ≤ 0), P(d ≥ 0)) over the resamples, the smallest
    α at which the (1 - α) percentile interval excludes 0.

    When no resample reaches 0 that only says p < 1/B, and a floor at 1/B would make every difference look
    alike after Holm's correction (with 100 comparisons, 100/B = 0.05: nothing significant). The tail is
    then extrapolated with the normal approximation of the bootstrap distribution, 2·Φ(-|mean d| / sd d),
    capped at 1/B."""
    p = 2 * min(float(np.mean(d <= 0)), float(np.mean(d >= 0)))
    if p > 0:
        return min(1.0, p)
    sd = float(np.std(d, ddof=1))
    tail = math.erfc(abs(float(np.mean(d))) / sd / math.sqrt(2)) if sd > 0 else 0.0
    return min(1 / d.size, tail)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order: the i-th smallest p times (m - i + 1), made
    non-decreasing in that order and capped at 1. Rejecting where adjusted p < α keeps the family-wise
    error at α without assuming the tests independent."""
    m = len(pvalues)
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda j: pvalues[j])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def holm_adjust(comparisons: list[Comparison]) -> None:
    """Fill `p_adjusted` of the comparisons that have a p-value, as one family."""
    tested = [(c, c.p_value) for c in comparisons if c.p_value is not None]
    for (c, _), p in zip(tested, holm([p for _, p in tested]), strict=True):
        c.p_adjusted = p


def pairable(a: Sample | None, b: Sample | None) -> bool:
    """Scored on the same items: as many predictions, and the same inputs where both recorded them."""
    if a is None or b is None or a.items != b.items:
        return False
    return a.inputs is None or b.inputs is None or a.inputs == b.inputs


def compare_samples(a: Sample, b: Sample, diff: float) -> Comparison:
    """Paired comparison of two samples on the same items (their `boot` share the item resamples)."""
    d = a.boot - b.boot
    lo, hi = np.percentile(d, [2.5, 97.5])
    if a.seeds == 1 and b.seeds == 1:
        only_a = int(np.sum(a.scores[0] > b.scores[0]))
        only_b = int(np.sum(a.scores[0] < b.scores[0]))
        return Comparison(
            diff, (float(lo), float(hi)), mcnemar_exact(only_a, only_b), MCNEMAR, (only_a, only_b)
        )
    return Comparison(diff, (float(lo), float(hi)), bootstrap_p(d), PAIRED_BOOTSTRAP)


def standard_error(e: Scored) -> float | None:
    """The bootstrap's standard deviation, or, without predictions, the recorded interval's half-width / 1.96."""
    if e.sample is not None:
        return float(np.std(e.sample.boot, ddof=1))
    if e.ci95 is not None:
        return (e.ci95[1] - e.ci95[0]) / (2 * _Z95)
    return None


def compare_unpaired(a: Scored, b: Scored) -> Comparison:
    """Normal approximation for two entries not scored on the same items: z = diff / √(se_a² + se_b²)."""
    diff = (a.mean or 0.0) - (b.mean or 0.0)
    se_a, se_b = standard_error(a), standard_error(b)
    if se_a is None or se_b is None:
        return Comparison(diff, None, None, None)
    se = math.hypot(se_a, se_b)
    if se == 0:  # both constant (every item right, say): any difference is certain
        return Comparison(diff, (diff, diff), 1.0 if diff == 0 else 0.0, UNPAIRED)
    p = math.erfc(abs(diff) / se / math.sqrt(2))
    return Comparison(diff, (diff - _Z95 * se, diff + _Z95 * se), p, UNPAIRED)


def compare_entries(a: Scored, b: Scored) -> Comparison:
    """`a` against `b`, paired when they were scored on the same items, else unpaired."""
    if pairable(a.sample, b.sample):
        assert a.sample is not None and b.sample is not None  # pairable() checked
        return compare_samples(a.sample, b.sample, (a.mean or 0.0) - (b.mean or 0.0))
    return compare_unpaired(a, b)


def compare(a_runs: list[RunData], b_runs: list[RunData], seed: int = SEED) -> Comparison:
    """Compare two methods from their runs (each a list of seeds), outside a report."""
    found = samples({"a": a_runs, "b": b_runs}, seed)
    a, b = found["a"], found["b"]
    if a is None or b is None or not pairable(a, b):
        raise ValueError("both methods need predictions on the same test items for a paired comparison")
    return compare_samples(a, b, float(a.scores.mean(dtype=np.float64) - b.scores.mean(dtype=np.float64)))


# -- the smallest detectable difference ------------------------------------------------------------------


def min_discordant(alpha: float = ALPHA) -> int:
    """Fewest discordant items, all one way, for which McNemar's exact test reaches p < alpha (6 at 5%)."""
    return math.floor(math.log2(2 / alpha)) + 1


def min_detectable_diff(n: int, discordance: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest difference of two methods' accuracies on `n` shared items that a two-sided paired test at
    `alpha` detects with probability `power`, given the share of items they answer differently.

    McNemar's normal approximation: the estimated difference has variance (q - δ²)/n, q/n under no
    difference, so δ = (z_{1-α/2} + z_{power}) · √(q/n). Dropping δ² errs on the large side. Never below
    `min_discordant()/n`: fewer discordant items cannot reach significance at all.
    """
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    return max(z * math.sqrt(discordance / n), min_discordant(alpha) / n)


def discordance(a: Sample, b: Sample) -> float:
    """Share of items on which a seed of `a` and a seed of `b`, drawn at random, disagree (one right, one
    wrong): with one seed each, the McNemar discordant pairs over n."""
    pa, pb = a.scores.mean(axis=0), b.scores.mean(axis=0)
    return float(np.mean(pa * (1 - pb) + (1 - pa) * pb))


@dataclass
class Detectable:
    diff: float
    """The smallest detectable difference, metric units (0..1)."""
    items: int
    basis: str
    """How it was worked out, for the report's note."""


def detectable(
    best: Scored, runner_up: Scored | None, labels: tuple[str, str] = ("", "")
) -> Detectable | None:
    """The detectable difference between the best and the runner-up on this test set: from their observed
    discordance when they are paired, else from the conservative bound q = 2·p·(1-p) at the best's score
    (the discordance of two methods with that accuracy whose errors are independent)."""
    if best.sample is None:
        return None
    n = best.sample.items
    if runner_up is not None and pairable(best.sample, runner_up.sample):
        assert runner_up.sample is not None  # pairable() checked
        q = discordance(best.sample, runner_up.sample)
        basis = f"{labels[0]} and {labels[1]} answer {100 * q:.1f}% of the items differently"
    else:
        p = float(best.sample.scores.mean(dtype=np.float64))
        q = 2 * p * (1 - p)
        basis = f"assuming independent errors at {100 * p:.1f}%"
    return Detectable(min_detectable_diff(n, q), n, basis)
