#!/usr/bin/env bash
# Copy what a later session needs to report on an experiment from its runs folder into findings/<name>/:
# every finished run's result.json, config.json, predictions.jsonl and log.jsonl (not its artifact),
# the selection candidates' records (not their kept states), and the resolved spec (spec-<methods>.yaml); then the report
# as JSON and Markdown, and its charts.
#   bash findings/collect.sh runs/banking77-full findings/banking77_full
set -euo pipefail
src=$1; dst=$2
mkdir -p "$dst/runs"
# one spec per part (compare --methods a,b writes a spec of those methods): spec-a-b.yaml
part=$(.venv/bin/python -c "import sys, yaml; print('-'.join(m['name'] if isinstance(m, dict) else m for m in yaml.safe_load(open(sys.argv[1]))['methods']))" "$src/spec.yaml")
cp "$src/spec.yaml" "$dst/spec-${part//[:+]/-}.yaml"
for run in "$src"/*/; do
  name=$(basename "$run")
  [ -f "$run/result.json" ] || continue
  mkdir -p "$dst/runs/$name"
  for f in result.json config.json predictions.jsonl log.jsonl; do
    [ -f "$run/$f" ] && cp "$run/$f" "$dst/runs/$name/$f"
  done
done
if [ -d "$src/selection" ]; then
  (cd "$src" && find selection -maxdepth 2 -name '*.json' -print0 | xargs -0 -I{} cp --parents {} "$OLDPWD/$dst/runs/")
fi
tb=${TUNEBENCH:-.venv/bin/tunebench}
"$tb" report "$dst/runs" --format json --out "$dst/report.json"
"$tb" report "$dst/runs" --format md --out "$dst/report.md" --charts "$dst"
