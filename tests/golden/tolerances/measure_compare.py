"""Largest differences per metric between golden-study runs (same protocol and horizon)::

    python tests/golden/tolerances/measure_compare.py REFERENCE.jsonl OTHER.jsonl ...

Losses: relative, ``|a - b| / max(|a|, |b|)``; accuracies: in points. Over every lane
(study, configuration, seed) and epoch; non-finite values count only when one side is.
"""

import json
import math
import sys
from pathlib import Path


def load(path: str) -> dict:
    records = map(json.loads, Path(path).read_text().splitlines())
    return {(r["study"], r["config_index"], r["seed"]): r for r in records}


def differences(a: dict, b: dict) -> dict[str, list]:
    found: dict[str, list] = {}
    for key in a.keys() & b.keys():
        history_a, history_b = a[key]["history"], b[key]["history"]
        for metric in history_a:
            for x, y in zip(history_a[metric], history_b[metric], strict=True):
                if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
                    if (x is None) != (y is None):
                        found.setdefault(metric + " finite-mismatch", []).append(key)
                    continue
                if "loss" in metric:
                    d = abs(x - y) / max(abs(x), abs(y), 1e-12)
                else:
                    d = abs(x - y) * 100
                found.setdefault(metric, []).append((d, key, x, y))
    return found


def main(reference: str, *others: str) -> None:
    ref = load(reference)
    for other in others:
        theirs = load(other)
        shared = ref.keys() & theirs.keys()
        same = sum(json.dumps(ref[k]) == json.dumps(theirs[k]) for k in shared)
        names = f"{Path(reference).parent.name} vs {Path(other).parent.name}"
        print(f"== {names}: {len(shared)} lanes, {same} identical")
        for metric, values in sorted(differences(ref, theirs).items()):
            if metric.endswith("mismatch"):
                print(f"   {metric}: {len(values)}")
                continue
            d, key, x, y = max(values, key=lambda v: v[0])
            mean = sum(v[0] for v in values) / len(values)
            print(f"   {metric:16s} max {d:.3g} (at {key}, {x:.6g} vs {y:.6g}) mean {mean:.3g}")


if __name__ == "__main__":
    main(*sys.argv[1:])
