"""The table from records: one row per configuration, mean ± std over seeds
(``summarize``), and its text (``format_table``); ``summary_csv`` writes the same rows as
``summary.csv``.

Works from records alone (the dicts of ``results.jsonl``); nothing here trains.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from flaxmnist.errors import SpecError
from flaxmnist.report.transfer import format_transfer
from flaxmnist.search.trials import by_config, cost, objectives_of, pareto_front
from flaxmnist.specs.config import CONFIG_KEYS
from flaxmnist.studies import builtin_studies, load_study

#: Config keys that are hyperparameters (a record's config also describes the data).
HYPERPARAMETER_KEYS = CONFIG_KEYS


def varied_keys(records: Sequence[dict[str, Any]]) -> list[str]:
    """Hyperparameters whose value differs between the configurations of ``records``."""
    keys = [
        key
        for key in HYPERPARAMETER_KEYS
        if len({repr(record["config"].get(key)) for record in records}) > 1
    ]
    return keys or ["learning_rate"]


def _mean_std(values: list[float | None]) -> tuple[float, float]:
    array = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    std = float(np.std(array, ddof=1)) if len(array) > 1 else float("nan")
    return float(np.mean(array)), std


def mean_curve(records: Sequence[dict[str, Any]], key: str = "val_accuracy") -> np.ndarray:
    """Per-epoch mean over ``records`` (seeds) of ``history[key]``; null counts as NaN."""
    curves = [[np.nan if v is None else v for v in r["history"][key]] for r in records]
    return np.mean(np.array(curves, dtype=np.float64), axis=0)


def _best_epoch(records: Sequence[dict[str, Any]]) -> int | None:
    curve = mean_curve(records)
    return None if np.all(np.isnan(curve)) else int(np.nanargmax(curve)) + 1


def _ensemble(group: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    ensemble = group[0].get("ensemble")
    return ensemble if ensemble and ensemble["seeds"] > 1 else None


def summarize(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per configuration, in study order, with seed statistics.

    Each row has ``config_index``, ``config``, ``seeds``, ``val_mean``, ``val_std``,
    ``test_mean``, ``test_std`` (std is the sample std over seeds, NaN for one seed),
    ``best_epoch`` (1-based epoch of the highest mean validation accuracy), and
    ``diverged`` and ``at_chance`` (how many seeds did), and ``ensemble`` (the ensemble of
    the seeds' ``seeds``, ``val_accuracy``, ``test_accuracy``; ``None`` for one seed or
    records written before flaxmnist kept it).

    Example::

        >>> import flaxmnist
        >>> records = flaxmnist.run_sweep("lr", epochs=1, seeds=2, limit_train=400)
        >>> rows = flaxmnist.summarize(records)
        >>> len(rows), rows[0]["seeds"], sorted(rows[0])[:3]
        (24, 2, ['at_chance', 'best_epoch', 'config'])
    """
    by_index: dict[int, list[dict[str, Any]]] = {}
    for record in records:
        by_index.setdefault(record["config_index"], []).append(record)
    rows = []
    for index in sorted(by_index):
        group = by_index[index]
        val_mean, val_std = _mean_std([r["val_accuracy"] for r in group])
        test_mean, test_std = _mean_std([r["test_accuracy"] for r in group])
        rows.append(
            {
                "config_index": index,
                "config": group[0]["config"],
                "seeds": len(group),
                "val_mean": val_mean,
                "val_std": val_std,
                "test_mean": test_mean,
                "test_std": test_std,
                "best_epoch": _best_epoch(group),
                "epochs": max(len(r["history"]["val_accuracy"]) for r in group),
                "diverged": sum(bool(r["diverged"]) for r in group),
                "at_chance": sum(bool(r["at_chance"]) for r in group),
                "ensemble": _ensemble(group),
            }
        )
    return rows


def best_row(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The configuration with the highest mean validation accuracy (first one on ties) among
    those trained the most epochs (``records.selection_key``)."""
    return max(
        rows,
        key=lambda row: (
            row.get("epochs", 0),
            np.nan_to_num(row["val_mean"], nan=-1.0),
            -row["config_index"],
        ),
    )


#: Table headers of a second objective, and how its values are written.
COST_HEADERS = {"params": "params", "compute": "compute (FLOP)"}


def format_cost(value: float, objective: str) -> str:
    """A cost as the table writes it: ``12,730`` parameters, ``1.37e+11`` FLOPs."""
    return f"{int(value):,}" if objective == "params" else f"{value:.3g}"


def format_value(value: Any, key: str = "") -> str:
    """A config value as text: floats short (``1e-05``); widths ``hidden`` joined by ``-``
    (``300-150``, as in 784-300-150-10), other per-layer values by ``/`` (``0.1/0.2``).
    """
    if isinstance(value, list):
        return ("-" if key == "hidden" else "/").join(format_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _format_accuracy(mean: float, std: float) -> str:
    if np.isnan(mean):
        return "n/a"
    if np.isnan(std):
        return f"{100 * mean:.2f}"
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def _status(row: dict[str, Any]) -> str:
    parts = [
        f"{label} {row[key]}/{row['seeds']}"
        for key, label in (("diverged", "diverged"), ("at_chance", "at chance"))
        if row[key]
    ]
    return ", ".join(parts) or "ok"


def split_by_study(records: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Records grouped by their ``study`` field, in first-seen order."""
    studies: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        studies.setdefault(record["study"], []).append(record)
    return studies


def study_description(
    study: str,
    records: Sequence[dict[str, Any]] = (),
    descriptions: Mapping[str, str] | None = None,
) -> str:
    """The ``description`` of ``study``'s spec, or ``""`` when it is not known.

    ``descriptions`` (study name -> description) wins. Otherwise a packaged study of that
    name is asked, but only if ``records`` match its configurations (a spec file of the same
    name with other values gets no borrowed description; ``epochs`` may differ, as the
    command line overrides it).

    Example::

        >>> study_description("lr")
        'Part 2.1 - tuning learning rates (M=300, 10 epochs, batch 200)'
        >>> study_description("my-own", descriptions={"my-own": "a test"}), study_description("x")
        ('a test', '')
    """
    if descriptions is not None and study in descriptions:
        return descriptions[study]
    if study not in builtin_studies():
        return ""
    try:
        packaged = load_study(study)
    except SpecError:  # a composite spec, or a broken one: no description to show
        return ""
    keys = [key for key in packaged.varied if key != "epochs"]
    for record in records:
        index = record.get("config_index", -1)
        if not 0 <= index < len(packaged.configs):
            return ""
        config = packaged.configs[index].to_dict()
        if any(config[key] != record["config"].get(key) for key in keys):
            return ""
    return packaged.description


def _count(values: set[int], unit: str) -> str:
    """``1 epoch``, ``3 seeds``, ``1–10 epochs`` (a range when the values differ)."""
    low, high = min(values), max(values)
    return f"{low if low == high else f'{low}–{high}'} {unit}{'' if high == 1 else 's'}"


def what_ran(records: Sequence[dict[str, Any]]) -> str:
    """What ``records`` trained, read off them, not off the spec (whose description may say
    30 epochs where ``--epochs 1`` ran): ``36 configs x 1 seed, 1 epoch, 2000 training
    images``. The epochs are those trained: a search stops some early (``1–10 epochs``)."""
    seeds = Counter(record["config_index"] for record in records)
    epochs = {len(record["history"]["val_accuracy"]) for record in records}
    images = {str(record["config"].get("train_size", "?")) for record in records}
    return (
        f"{_count({len(seeds)}, 'config')} x {_count(set(seeds.values()), 'seed')}, "
        f"{_count(epochs, 'epoch')}, {'/'.join(sorted(images))} training images"
    )


def format_table(
    records: Sequence[dict[str, Any]], descriptions: Mapping[str, str] | None = None
) -> str:
    """Each study's table as text: varied hyperparameters, accuracies in %, status, best.

    The header line of each study names its spec's description (see
    ``study_description``; ``descriptions`` maps study names to descriptions, for studies
    from spec files), what ran (``what_ran``: the records' epochs, which the description
    may not match) and the split that selects.

    Example::

        >>> import flaxmnist
        >>> records = flaxmnist.run_sweep("lr", epochs=1, seeds=1, limit_train=400)
        >>> print(flaxmnist.format_table(records).splitlines()[1])  # doctest: +NORMALIZE_WHITESPACE
        #   learning_rate  holdout acc %  test acc %  status
    """
    if not records:
        return "(no results)"
    return "\n\n".join(
        _format_study(group, study_description(study, group, descriptions))
        for study, group in split_by_study(records).items()
    )


def table_cells(
    records: Sequence[dict[str, Any]], keys: Sequence[str], val_name: str
) -> tuple[list[str], list[list[str]]]:
    """The table's header and one row of cells per configuration (in ``summarize``'s order):
    the number, the varied ``keys``, the accuracies (``val_name`` heads the selecting
    split's), with two objectives the cost and a ``*`` on the Pareto front, the status."""
    costs, front = objectives_of(records)[1:], pareto_front(records)
    header = ["#", *keys, val_name, "test acc %", *(COST_HEADERS[name] for name in costs)]
    header += [*(["front"] if costs else []), "status"]
    rows = summarize(records)
    ensembles = {row["ensemble"]["seeds"] for row in rows if row["ensemble"]}
    if ensembles:  # labelled apart: never what selects
        header.insert(3 + len(keys), f"ensemble of {max(ensembles)} seeds {val_name[:-6]}/test %")
    groups, body = by_config(records), []
    for row in rows:
        index = row["config_index"]
        body.append(
            [
                str(index + 1),
                *(format_value(row["config"].get(key), key) for key in keys),
                _format_accuracy(row["val_mean"], row["val_std"]),
                _format_accuracy(row["test_mean"], row["test_std"]),
                *([_format_ensemble(row["ensemble"])] if ensembles else []),
                *(format_cost(cost(groups[index], name), name) for name in costs),
                *(["*" if index in front else ""] if costs else []),
                _status(row),
            ]
        )
    return header, body


def _format_ensemble(ensemble: dict[str, Any] | None) -> str:
    if ensemble is None:
        return ""
    val, test = (ensemble[k] for k in ("val_accuracy", "test_accuracy"))
    return " / ".join("nan" if v is None else f"{100 * v:.2f}" for v in (val, test))


def val_header(records: Sequence[dict[str, Any]]) -> str:
    """The header of the selecting split's accuracy: the holdout's, or the test set's."""
    holdout = records[0]["config"].get("validate_on", "holdout") == "holdout"
    return "holdout acc %" if holdout else "val(=test) acc %"


def _format_study(records: Sequence[dict[str, Any]], description: str = "") -> str:
    rows = summarize(records)
    keys = varied_keys(records)
    config = records[0]["config"]
    seeds = rows[0]["seeds"]
    holdout = config.get("validate_on", "holdout") == "holdout"
    header, body = table_cells(records, keys, val_header(records))
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    named = f' ("{description}")' if description else ""
    lines = [
        f"study {records[0]['study']}{named}, ran: {what_ran(records)}; "
        + (
            "validation on the holdout (last 10,000 training images, never trained on)"
            if holdout
            else "validation on the TEST set (the notebook's protocol)"
        ),
        "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=False)),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=False)) for line in body]
    best = best_row(rows)
    setting = ", ".join(f"{key}={format_value(best['config'].get(key), key)}" for key in keys)
    lines.append(
        f"best by {'holdout' if holdout else 'validation'} accuracy: #{best['config_index'] + 1} "
        f"({setting}): validation {_format_accuracy(best['val_mean'], best['val_std'])} %, "
        f"test {_format_accuracy(best['test_mean'], best['test_std'])} %"
    )
    costs = objectives_of(records)[1:]
    if costs:
        front = ", ".join(f"#{i + 1}" for i in pareto_front(records)) or "none yet"
        lines.append(
            f"Pareto front (holdout accuracy up, {costs[0]} down; * above), most accurate "
            f"first: {front}"
        )
    if not holdout and len(rows) > 1:  # one configuration: nothing was selected
        lines.append(
            "note: the test set was used for selection, so the best test accuracy is optimistic"
        )
    if any(r["config"].get("dropout_semantics") == "keras1" for r in records):
        lines.append(
            "note: keras1 dropout semantics: a rate of 1.0 (or 0) trains with no dropout, as "
            "Keras 1's Dropout did"
        )
    if seeds > 1:
        lines.append(f"(mean ± sample std over {seeds} paired seeds)")
    transfer = format_transfer(records)  # a width x learning-rate grid's answer
    return "\n".join([*lines, *([transfer] if transfer else [])])
