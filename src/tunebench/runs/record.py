"""The result record, schema 1: one self-describing JSON file per run.

Keys (all present; values may be null where a method has nothing to report):
  schema           1
  status           "ok" or "failed"
  error            why a run failed (null when it did not)
  failed_files     null, or for a failed run the folder (failed-<UTC time>/) its partial files were moved
                   to (null when it left none)
  experiment, model, task, method, seed
  data_size        null (the experiment did not vary the training-set size), or the size this run trained
                   at (`data_sizes`, runs/data_sizes.py): tag (in the folder name: n100, n-all,
                   10-per-class), requested (a count or "all"), per_class, examples (training examples it
                   had), of (the whole training split's), seed (of the fixed order the nested subsets are
                   drawn in), fingerprint (of the subset's examples), label_counts (per class: label →
                   examples); a true subset also adds config.task.train_subset {examples, fingerprint}
                   and is part of the identity, the whole split (all) is the same run as without sizes
  config           the resolved config of the run; with model_fingerprint (the hash of the model folder's
                   files) and versions (tunebench, torch, transformers, PEFT): with the data's fingerprint,
                   the method, the budget and the seed they are the run's identity (config_hash); the
                   experiment's name and the paths are recorded but are not part of it
  config_hash      the run's identity: a run that finished with the same hash, in this experiment or
                   another one under the same runs folder or the run cache, is not redone
  primary_metric   the metric the leaderboard ranks by ("exact_match" or "accuracy")
  metrics          metric name → value in [0, 1]
  ci95             [low, high] 95% bootstrap interval of the primary metric
  params           trainable, total, trainable_pct
  method_info      null, or what the method chose while preparing: `partial` its trained blocks (select:
                   last) or matrices with their signal-to-noise ratios (select: snr); `galore` the matrices
                   it projects, their rank and its optimizer's state values; `lora`/`dora`/`qlora` with
                   init pissa, olora, loftq or eva: the init (PEFT's name), whether it rewrote the base, its
                   seconds (also counted in train.seconds), the artifact's rank (2r for pissa and olora,
                   exported as a plain LoRA on the untouched base) and the adapted matrices' ranks
  train            seconds, steps, examples, tokens (non-padding), target_tokens, padded_tokens (tokens
                   computed with their padding; null where TRL trained), max_width (the widest
                   micro-batch with its padding; null where TRL trained), tokens_per_s,
                   peak_rss_mb, peak_gpu_mb, bf16, final_loss, truncated (examples cut to max_length),
                   dev_eval_seconds (time spent scoring the dev curve, left out of `seconds`),
                   dev_curve ([[step, dev score], ...] every budget.dev_every steps; [] when off),
                   resumed_from (the checkpoint's step when a killed run resumed, else null),
                   checkpoints and checkpoint_seconds (written by the last process; left out of `seconds`),
                   planned_steps (the budget's steps; more than `steps` when early stopping ended the run),
                   frozen_cache (null: every step ran the whole model; else cached_blocks (the frozen
                   blocks below the first trained one, computed once without dropout and replayed: see
                   budget.cache_frozen), seconds (computing or reading them, counted in `seconds`),
                   from_disk (an earlier run had computed them)),
                   early_stopping (null when off, else patience, min_delta, restore (the rule: beyond_noise,
                   best or never; runs/devcurve.py), stopped_at (null: ran its whole budget), best_step,
                   best_score, last_step, last_score, kept_step (the state evaluated on test), restored (the
                   best dev state was put back), lead (null, or the best state's paired lead over the last on
                   the dev examples: best_only, last_only, n, z (null: infinite), beyond_noise), note),
                   convergence {still_improving (true: the budget ran out while it was still learning,
                   "budget-limited"; null: unknown), evidence ("early stopping", "dev curve", "training
                   loss" or null), detail} (train/convergence.py gives the tests);
                   null for a method that does not train
  eval             seconds, n, ms_per_example (batched: throughput), peak_rss_mb, peak_gpu_mb
  usage            null, or for a model behind an endpoint (`openai:MODEL@URL`), what the test split cost
                   there: endpoint, model, api, examples, requests, prompt_tokens and completion_tokens
                   (as the endpoint reported them; null when it reports none), latency_ms {median, p90,
                   mean} per request, seconds, max_concurrency, and per_1k_examples {prompt_tokens,
                   completion_tokens, seconds}; params.total is then null (unknown)
  latency          ms_per_example: median time to answer one example alone (batch size 1, dev inputs,
                   right after the test evaluation), n (examples timed: up to 5, fewer once 10 s have
                   passed), batch_size (1), merged_ms_per_example: the same after `merge()` folded the
                   method's weights into the base (null when nothing merges)
  drift            nll_increase: mean per-token NLL (nats) of the base model's own continuations of
                   neutral prompts under the tuned model, minus under the base model (forgetting; 0 for
                   prompting); tuned_nll, base_nll, texts (how many), reference (the cached file with
                   the texts, under the model cache); null without a language model
  head             null for a generating model, or the classification head: pooling (the model's own:
                   methods/pooling.py), pooling_source, lr (its own rate), init ("random" or "probe":
                   LP-FT), and with LP-FT probe_train_accuracy, probe_seconds, probe_features_cached
  objective        null for plain supervised training, or what a training objective built and dropped
                   (teacher data, preference pairs, phases, warnings)
  selection        null, or the learning-rate search on the dev split: search (grid / halving), split
                   ("dev"), schedule, metric, seed, grid, extended (null, or {from, to, direction} when the
                   winner sat at the grid's edge and one more rate was tried), at_edge (the extension won
                   too), chosen_lr, reusable (the winner trained the whole budget and its state was kept),
                   reuse_path, candidates [{lr, steps, rung, fraction, status, metric, dev_score,
                   final_loss, error, extension, reusable}]
  search           null, or the configuration search (`search:` on the method's entry, runs/search.py) that
                   chose this run's options on the dev split: sampler (TPE or grid), seed (the trials'
                   seed, also the sampler's), split ("dev"), metric, space (name → list or {log|float|int:
                   [lo, hi]}), objectives and directions, pruner (null when nothing could be pruned) and
                   pruning_off (why not), rule (how the configuration was chosen), trials [{number, params,
                   status (complete / pruned / failed), metric, dev_score, dev_curve, steps, final_loss,
                   trainable_params, peak_memory_mb, train_seconds, pruned_at, error, cached (told from
                   its record, not trained), key}], pareto (the Pareto set's trial numbers with several
                   objectives, else []), chosen (name → value: this run's), chosen_trial, trained (trials
                   trained by this search, the others were told from their records), reusable, reuse_path,
                   optuna (its version)
  reused           absent, or {from: "learning-rate selection" or "configuration search", path}: this run's
                   training is the selection winner's or the search's chosen trial's (same seed, same
                   whole budget), evaluated on test without training it again; or {from: "an earlier run", path}: the same run (same identity: runs/grid.py
                   `identity`) finished in another experiment or the run cache, and was copied here
  continued        absent, or {from: "learning-rate selection", step}: the search's last rung of successive
                   halving was this run's first `step` steps (same seed, same whole-budget schedule); the run
                   continued from that state (its log marks those steps `continued`) and trained the rest
  artifact         path (relative to the run folder), bytes; for a method trained by an objective the
                   folder also holds objective.json (what its answers depend on besides the weights)
  wall_seconds     the whole run: loading, training, evaluation, export
  task_info        the task's description (options, kind, label set)
  env              python, packages, device, cpu, threads, git sha, time, process (own: this run
                   was the only one in its process, so its memory is its own; shared: --executor local)
"""

from __future__ import annotations

import platform
import re
import subprocess
import time
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

SCHEMA = 1


def documented_keys() -> set[str]:
    """The keys this module's docstring documents (a test holds result.json to them)."""
    keys: set[str] = set()
    for line in (__doc__ or "").splitlines():
        match = re.match(r"^  ([a-z_0-9]+(?:, [a-z_0-9]+)*)(?:\s{2,}|$)", line)
        if match:
            keys.update(match.group(1).split(", "))
    return keys


def base_record(config: dict[str, Any], digest: str) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "status": "failed",
        "error": None,
        "failed_files": None,
        "experiment": config["experiment"],
        "model": config["model"],
        "task": config["task"]["name"],
        "method": config["method"]["name"],
        "seed": config["seed"],
        "data_size": config.get("data_size"),
        "config": config,
        "config_hash": digest,
        "primary_metric": None,
        "metrics": {},
        "ci95": None,
        "params": None,
        "method_info": None,
        "train": None,
        "eval": None,
        "usage": None,
        "latency": None,
        "drift": None,
        "selection": None,
        "search": None,
        "artifact": None,
        "wall_seconds": None,
        "task_info": None,
        "env": {
            **environment(),
            "process": _process["runs"],
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    }


#: Whether this process runs one run only ("own": the process executor's child, a Ray worker that takes
#: one task) or several one after the other ("shared": --executor local), whose memory then reflects what
#: ran before it.
_process = {"runs": "shared"}


def in_own_process() -> None:
    """Say that this process runs this run only (its peak memory is the run's own)."""
    _process["runs"] = "own"


@cache
def environment() -> dict[str, Any]:
    """What does not change within a process (the run's time and process kind are added per run)."""
    packages: dict[str, str | None] = {}
    for name in ("tunebench", "torch", "transformers", "peft", "accelerate", "numpy"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {
        "python": platform.python_version(),
        "packages": packages,
        "device": device,
        "cpu": _cpu_name(),
        "threads": torch.get_num_threads(),
        "git_sha": _git_sha(),
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
