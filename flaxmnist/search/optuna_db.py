"""``DIR/optuna.db``: a run as Optuna studies, to open in optuna-dashboard while it trains.

Every run directory gets ``optuna.db``, Optuna's SQLite storage, which process 0 brings up
to date after every call (``LiveExport``). It holds:

- one Optuna study per flaxmnist study, named after it, maximising the holdout accuracy
  (and minimising a second objective, ``trials.cost``), its metric names set;
- one trial per configuration, once all its seeds are recorded, whatever the strategy (a
  grid's too): its parameters are the keys the study searches (its priors, as
  ``sampler.distribution`` maps them) or varies (a grid's values, as categories), its state,
  values and intermediate values those of ``trials.outcome`` (the seed-mean holdout
  accuracy, per epoch);
- beside them, as user attributes: ``config_index``, the whole ``config``, ``seeds``, each
  seed's ``val_accuracy`` and ``test_accuracy`` (the test set is never a value),
  ``test_accuracy_mean``, ``compute`` (training FLOPs, every seed), ``epochs`` trained,
  ``diverged``, and the record's ``search`` fields (``search_round`` numbered from 1, as
  the progress says "round 1 of 4"; the record's ``round`` is an index from 0).

Each trial starts and ends when its configuration trained (``timing.json``,
``rundir.read_timing``), so the dashboard shows real durations.

``export`` adds the trials that are missing (a trial is known by its ``config_index``), so it
can run again at any moment: ``python -m flaxmnist.report DIR --optuna`` writes the file for
a run an older flaxmnist made, or mends one. Trials are numbered in the order they were
added; ``config_index`` names the configuration.

A file that cannot be written (locked by another program, damaged) never stops training:
``LiveExport`` warns once, in one line, and tries again after the next call.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from flaxmnist import interrupts
from flaxmnist.errors import FlaxmnistWarning, first_line
from flaxmnist.run.rundir import read_timing, with_defaults
from flaxmnist.search.trials import (
    COMPLETE,
    FAILED,
    by_config,
    named_param,
    outcome,
    param_value,
    seed_mean,
)
from flaxmnist.specs.config import CONFIG_KEYS
from flaxmnist.specs.space import parse_priors

DB = "optuna.db"
#: Seconds a write waits for a lock another program (optuna-dashboard) holds on the file.
LOCK_TIMEOUT = 5.0


def storage_url(out: str | Path) -> str:
    """The SQLAlchemy URL of ``out/optuna.db``, as optuna-dashboard takes it."""
    return f"sqlite:///{Path(out).resolve() / DB}"


def open_storage(out: str | Path):
    """Optuna's storage in ``out/optuna.db`` (made, with its tables, when missing)."""
    import optuna

    from flaxmnist.search.sampler import quiet_optuna

    quiet_optuna()
    return optuna.storages.RDBStorage(
        storage_url(out), engine_kwargs={"connect_args": {"timeout": LOCK_TIMEOUT}}
    )


def close(storage) -> None:
    """Close the storage's database connections (a pool SQLAlchemy would otherwise leave to
    the garbage collector, which Python 3.13 warns about)."""
    with contextlib.suppress(Exception):
        storage.engine.dispose()


def distributions(study: dict[str, Any]) -> dict[str, Any]:
    """Parameter name → Optuna distribution of a study, from its manifest settings: the
    priors of a search, or the values a grid's configurations take (keys that vary)."""
    from optuna.distributions import CategoricalDistribution

    from flaxmnist.search.sampler import flat_distributions

    space = study.get("search", {}).get("search")
    if space:
        return flat_distributions(parse_priors(space, study["name"]))
    configs = study.get("configs", [])
    result = {}
    for key in CONFIG_KEYS:
        values = list(dict.fromkeys(param_value(key, c[key]) for c in configs))
        if len(values) > 1:
            result[key] = CategoricalDistribution(values)
    return result


def export(
    out: str | Path, settings: dict[str, Any], records: Sequence[dict[str, Any]], storage=None
) -> int:
    """Add to ``out/optuna.db`` the trials of ``records`` it lacks (see the module); returns
    how many. ``settings`` are the run's (``manifest.json``'s ``settings``)."""
    if storage is None:
        storage = open_storage(out)
        try:
            return export(out, settings, records, storage)
        finally:
            close(storage)
    import optuna

    settings = with_defaults(settings)
    seeds = settings["seeds"]
    timing = read_timing(out)
    added = 0
    for study_settings in settings["studies"]:
        name = study_settings["name"]
        mine = [r for r in records if r["study"] == name]
        objectives = study_settings.get("search", {}).get("objectives", ["val_accuracy"])
        study = _study(storage, name, objectives, study_settings, settings)
        have = {t.user_attrs.get("config_index") for t in study.get_trials(deepcopy=False)}
        space = distributions(study_settings)
        trials = [
            _timed(_trial(group, space, objectives, optuna), timing.get(f"{name}/{index}"))
            for index, group in by_config(mine).items()
            if index not in have and len(group) >= seeds
        ]
        study.add_trials(trials)
        added += len(trials)
    return added


def _study(storage, name: str, objectives: list[str], study: dict, settings: dict):
    import optuna

    from flaxmnist.search.sampler import directions

    made = optuna.create_study(
        storage=storage, study_name=name, directions=directions(objectives), load_if_exists=True
    )
    if not made.user_attrs:  # a new study: say what it is
        strategy = study.get("search", {}).get("strategy", "grid")
        for key, value in (
            ("strategy", strategy),
            ("objectives", objectives),
            ("validate_on", settings["validate_on"]),
            ("seeds", settings["seeds"]),
            ("dataset", settings["dataset"]),
        ):
            made.set_user_attr(key, value)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            made.set_metric_names(list(objectives))
    return made


def _trial(group: list[dict[str, Any]], space: dict, objectives: list[str], optuna):
    """One configuration's records (every seed) as a finished Optuna trial."""
    result = outcome(group, objectives)
    first = group[0]
    named = ((key, named_param(key, first["config"])) for key in space)
    params = {key: value for key, value in named if value is not None}
    whole = result.state == COMPLETE or len(objectives) == 1  # pruned: one value, its last
    values = list(result.values) if result.values is not None and whole else None
    state = {
        COMPLETE: optuna.trial.TrialState.COMPLETE,
        FAILED: optuna.trial.TrialState.FAIL,
    }.get(result.state, optuna.trial.TrialState.PRUNED)
    user_attrs = {
        "config_index": first["config_index"],
        "config": first["config"],
        "seeds": [r["seed"] for r in group],
        "val_accuracy": [r["val_accuracy"] for r in group],
        "test_accuracy": [r["test_accuracy"] for r in group],
        "test_accuracy_mean": _finite(seed_mean([r["test_accuracy"] for r in group])),
        "compute": sum(r.get("compute", 0) for r in group),
        "epochs": max(len(r["history"]["val_accuracy"]) for r in group),
        "diverged": any(r["diverged"] for r in group),
        **{
            f"search_{k}": _shown(k, v)
            for k, v in first.get("search", {}).items()
            if k != "objectives"
        },
    }
    return optuna.trial.create_trial(
        state=state,
        values=values,
        params=params,
        distributions={key: space[key] for key in params},
        user_attrs=json.loads(json.dumps(user_attrs)),  # plain JSON values only
        intermediate_values=result.intermediate if len(objectives) == 1 else None,
    )


def _timed(trial, times: dict[str, str] | None):
    """``trial`` with the times its configuration trained (``rundir.read_timing``), so
    that the dashboard shows its duration; without them (a run before flaxmnist kept them)
    its times are the export's, and a user attribute says so."""
    if times and "ended" in times:
        # Local times without a zone, as Optuna's own trials keep them.
        start, end = (datetime.fromisoformat(times[k]).astimezone() for k in ("started", "ended"))
        trial.datetime_start = start.replace(tzinfo=None)
        trial.datetime_complete = end.replace(tzinfo=None)
    else:
        trial.set_user_attr("timing", "not recorded: the times are the export's")
    return trial


def _shown(key: str, value: Any) -> Any:
    """A record's ``search`` field as the dashboard shows it: a round numbered from 1, as
    the progress says it (the record's ``round`` is an index from 0, as ``config_index``)."""
    return value + 1 if key == "round" else value


def _finite(value: float) -> float | None:
    return value if np.isfinite(value) else None


def problem(err: Exception) -> tuple[str, str]:
    """Why ``optuna.db`` could not be written, and what to do about it."""
    orig = getattr(err, "orig", None)  # SQLAlchemy's wrapper keeps the library's error
    text = first_line(orig if isinstance(orig, BaseException) else err)
    if "locked" in text:
        return "it is locked by another program", "when it is free"
    if "not a database" in text or "malformed" in text:
        return "it is damaged: " + text, "delete it; then"
    return text, "when that is mended"


class LiveExport:
    """Keeps ``out/optuna.db`` up to date during a run: call it with every record after each
    call. A failure warns once per cause (``FlaxmnistWarning``) and training goes on."""

    def __init__(self, out: str | Path, settings: dict[str, Any]):
        self.out, self.settings = Path(out), settings
        self.storage = None
        self.warned: str | None = None

    def __call__(self, records: Sequence[dict[str, Any]]) -> None:
        try:
            if self.storage is None:
                self.storage = open_storage(self.out)
            export(self.out, self.settings, records, self.storage)
            self.warned = None
        except Exception as err:  # never stop training for the export
            self.close()
            if interrupts.pending():
                # A Ctrl-C came during the export (the run's handler records every one): the
                # database library may hand it back wrapped in an error of its own, or fail
                # on the connection it left; either way it is the user's stop.
                raise KeyboardInterrupt from err
            why, when = problem(err)
            if why != self.warned:
                warnings.warn(
                    f"{self.out / DB}: cannot update it ({why}); training goes on, and "
                    f"results.jsonl is intact: {when}, python -m flaxmnist.report {self.out} "
                    "--optuna brings it up to date",
                    FlaxmnistWarning,
                    stacklevel=2,
                )
            self.warned = why

    def close(self) -> None:
        """Close the file (the run is over, or it failed: the next call opens it again)."""
        if self.storage is not None:
            close(self.storage)
            self.storage = None
