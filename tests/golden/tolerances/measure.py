"""The differences the golden tolerances are multiples of, measured with the comparison of
``tests/test_golden.py`` itself::

    python tests/golden/tolerances/measure.py HORIZON --vs REFERENCE OTHER... [--vs ...]

HORIZON: ``early`` or ``end``, whose tolerances (``tolerances``) are printed beside;
REFERENCE and OTHER: ``results.jsonl`` files or run directories of the golden spec at that
horizon, one protocol each. Prints, per comparison and per metric, the largest difference
(where) and the mean, with their tolerances and whether the comparison passes; then, over
every comparison, the largest of each, as ``MEASURED_*`` holds them.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from test_golden import (  # noqa: E402
    HORIZONS,
    beyond_tolerance,
    differences,
    lane,
    read_records,
    tolerances,
)


def records(path: str) -> list[dict]:
    path = Path(path)
    return read_records(path / "results.jsonl" if path.is_dir() else path)


def main(horizon_name: str, *arguments: str) -> None:
    horizon = HORIZONS[horizon_name]
    overall: dict[str, list[float]] = {}
    reference = None
    arguments = iter(arguments)
    for argument in arguments:
        if argument == "--vs":
            reference = next(arguments)
            continue
        ours, theirs = records(reference), records(argument)
        by_lane = {lane(record): json.dumps(record) for record in ours}
        same = sum(by_lane[lane(record)] == json.dumps(record) for record in theirs)
        print(f"== {reference} vs {argument}: {len(theirs)} lanes, {same} identical")
        for metric, found in sorted(differences(ours, theirs).items()):
            largest, at = max(found)
            mean = sum(d for d, _ in found) / len(found)
            top, top_mean = tolerances(horizon, len(found))[metric]
            print(
                f"   {metric:24s} largest {largest:.3g} (at {at}; tolerance {top:.3g}) "
                f"mean {mean:.3g} (tolerance {top_mean:.3g})"
            )
            worst = overall.setdefault(metric, [0.0, 0.0])
            worst[:] = max(worst[0], largest), max(worst[1], mean)
        too_far = beyond_tolerance(ours, theirs, horizon)
        print(f"   beyond tolerance: {len(too_far)} metrics" + ("" if too_far else " (passes)"))
    print(f"# largest over every comparison ({horizon_name}): metric: (largest, mean)")
    print("{")
    for metric, (largest, mean) in overall.items():
        print(f'    "{metric}": ({largest:.3g}, {mean:.3g}),')
    print("}")


if __name__ == "__main__":
    main(*sys.argv[1:])
