"""Few-shot evaluation: tunebench's generation against the naive full-prompt loop, same predictions.

    python bench/fewshot_eval.py [--n 200] [--k 8] [--model smollm2-135m] [--quick]

The few-shot method of the default experiment (3-digit addition, k solved examples drawn from the training
split, rendered as the method renders them) answers `--n` test questions three ways:

1. naive: one question at a time, the whole prompt (instruction + k shots + question) encoded from scratch,
   `model.generate` with its defaults up to the method's max_new_tokens (32): what a user writes first.
2. batched: tunebench's `generate` without the shared-prefix cache: sorted by length, left-padded batches of
   --batch-size, stopping when every row has reached the end of its answer.
3. tunebench: the same plus the shared prefix (instruction and shots) run once, every batch starting from a
   copy of its key/value cache — what `tunebench compare` does.

The answers of all three must be identical (the first mismatch is printed); the speed-up of 3 over 1 is the
figure (target ≥ 2×), 2 over 1 shows what batching alone gives.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TUNEBENCH_NO_PROGRESS", "1")

import torch


@torch.no_grad()
def naive_loop(method, ctx, prompts: list[str]) -> list[str]:
    model, tokenizer = method.model, method.tokenizer
    out = []
    for prompt in prompts:
        enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=not method.prompt_has_specials)
        enc = enc.to(ctx.device)
        generated = model.generate(
            **enc,
            max_new_tokens=method.max_new_tokens(ctx.task),
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
        text = tokenizer.decode(generated[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        out.append(text.split(method.stop)[0] if method.stop else text)
    return out


def batched(method, ctx, prompts: list[str], reuse_prefix: bool) -> list[str]:
    from tunebench.evaluate.generate import generate

    return generate(
        method.model,
        method.tokenizer,
        prompts,
        max_new_tokens=method.max_new_tokens(ctx.task),
        batch_size=ctx.budget.eval_batch_size,
        device=ctx.device,
        bf16=ctx.bf16,
        stop=method.stop,
        add_special_tokens=not method.prompt_has_specials,
        reuse_prefix=reuse_prefix,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="test questions")
    parser.add_argument("--k", type=int, default=8, help="shots")
    parser.add_argument("--batch-size", type=int, default=100, help="rows per generation batch")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--quick", action="store_true", help="20 questions: a smoke test")
    args = parser.parse_args()
    n = 20 if args.quick else args.n

    from tunebench.cli.main import quiet_libraries
    from tunebench.methods.base import Context
    from tunebench.methods.prompting import FewShot, FewShotOptions
    from tunebench.models import resolve_model
    from tunebench.tasks import build_task
    from tunebench.train.budget import Budget
    from tunebench.train.device import pick_device, use_bf16

    quiet_libraries()
    task = build_task("arithmetic", {"op": "add", "digits": 3, "test_size": n})
    splits = task.splits()
    device = pick_device()
    budget = Budget(eval_batch_size=args.batch_size)
    ctx = Context(
        model=resolve_model(args.model),
        task=task,
        splits=splits,
        budget=budget,
        seed=0,
        device=device,
        bf16=use_bf16(budget.precision, device),
    )
    method = FewShot(FewShotOptions(k=args.k))
    method.prepare(ctx)
    prompts = [method.render(task, e.input) for e in splits.test]
    lengths = [len(method.tokenizer(p)["input_ids"]) for p in prompts]
    print(
        f"{args.model}, {n} questions x {args.k} shots ({'chat' if method.chat else 'plain'} format, prompts "
        f"{min(lengths)}-{max(lengths)} tokens), {device}, bf16 {ctx.bf16}, {torch.get_num_threads()} threads"
    )

    results = {}
    for name, run in (
        ("tunebench (prefix cache + batches)", lambda: batched(method, ctx, prompts, reuse_prefix=True)),
        ("batched, no prefix cache", lambda: batched(method, ctx, prompts, reuse_prefix=False)),
        ("naive loop (one at a time, full prompt)", lambda: naive_loop(method, ctx, prompts)),
    ):
        start = time.perf_counter()
        predictions = run()
        results[name] = (time.perf_counter() - start, predictions)
        print(f"  {name:<42} {results[name][0]:7.1f} s")

    naive_s, naive_pred = results["naive loop (one at a time, full prompt)"]
    for name, (seconds, predictions) in results.items():
        answers = [task.answer(p) for p in predictions]
        same = sum(a == task.answer(b) for a, b in zip(answers, naive_pred, strict=True))
        exact = task.score(predictions, [e.target for e in splits.test]).metrics["exact_match"]
        print(
            f"{name:<42} {seconds:7.1f} s  speed-up over naive {naive_s / seconds:5.2f}x  "
            f"same answers as naive {same}/{n}  exact match {exact:.1%}"
        )
        diff = [i for i in range(n) if predictions[i] != naive_pred[i]]
        if diff:
            i = diff[0]
            print(
                f"    {len(diff)} outputs differ from naive; first: {predictions[i]!r} vs {naive_pred[i]!r}"
            )


if __name__ == "__main__":
    main()
