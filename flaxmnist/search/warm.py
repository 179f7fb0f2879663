"""Warm start (``--warm-start DIR``): an earlier run's finished configurations, told to a
learned sampler before it proposes, so a second search of the same space starts informed.

For each study of this run whose strategy can be told earlier results
(``Strategy.warm_starts``), ``warm_records`` finds the study of ``DIR`` that searched the
same space (its ``[search]`` table equal: the study of the same name, else the only one),
and returns the records of its finished configurations: every seed in, none diverged,
trained to the epochs this search trains. A sampler is told each one's seed-mean holdout
accuracy, as it is told its own (``search.trials.outcome``).

Refused in one line, before anything runs: a directory that is not a run directory, one
that selected on the test set (its accuracies would teach the sampler the test set), one
of another dataset or split size, or one with no study of this space or no finished
configuration of these epochs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flaxmnist.errors import SettingsError
from flaxmnist.run.rundir import read_jsonl, read_manifest
from flaxmnist.search.trials import COMPLETE, by_config, outcome
from flaxmnist.specs.config import Study


def warm_records(
    directory: str | Path, study: Study, epochs: int, data: dict[str, Any]
) -> tuple[str, list[dict[str, Any]]]:
    """The name of ``directory``'s study of ``study``'s space and the records of its finished
    configurations of ``epochs`` epochs (see the module); ``data``: this run's ``dataset``
    and ``train_size``.

    Raises:
      SettingsError: naming ``--warm-start`` and why (see the module).
    """
    directory = Path(directory)
    try:
        settings = read_manifest(directory / "manifest.json")["settings"]
        records = read_jsonl(directory / "results.jsonl")
    except Exception as err:  # a missing or foreign directory: RunDirError, OSError
        raise _refused(directory, f"not a run directory flaxmnist can read ({err})") from None
    if settings.get("validate_on") != "holdout":
        raise _refused(
            directory,
            "it selected on the test set: its accuracies would teach the sampler the test set",
        )
    for key in ("dataset", "train_size"):
        if settings.get(key) != data[key]:
            raise _refused(
                directory, f"its {key} is {settings.get(key)!r}, this run's {data[key]!r}"
            )
    name = _same_space(directory, settings["studies"], study)
    mine = [r for r in records if r.get("study") == name]
    finished = [
        record
        for group in by_config(mine).values()
        if len(group) == settings.get("seeds")  # every seed in
        and outcome(group).state == COMPLETE
        and group[0]["config"]["epochs"] == epochs
        for record in group
    ]
    if not finished:
        raise _refused(
            directory, f"its study {name!r} has no finished configuration of {epochs} epochs"
        )
    return name, finished


def _same_space(directory: Path, studies: Sequence[dict[str, Any]], study: Study) -> str:
    """The name of the study of ``studies`` that searched ``study``'s ``[search]`` table."""
    space = study.search.settings.get("search")
    same = [s["name"] for s in studies if s.get("search", {}).get("search") == space]
    if study.name in same:
        return study.name
    if len(same) == 1:
        return same[0]
    names = ", ".join(s["name"] for s in studies)
    why = "several studies of this space" if same else "no study of this [search] space"
    raise _refused(directory, f"{why} (its studies: {names}); name the study as it was named")


def _refused(directory: Path, why: str) -> SettingsError:
    return SettingsError(why, parameter="warm_start", value=str(directory))
