"""What ``run_sweep`` checks before anything runs: the studies (named, loaded, their epochs
overridden, each checked by its strategy: a learned one by Optuna's own rules), the
settings, that every configuration's batch fits the training set, and, on the run's plan
(``run.plan.Plan``), that one lane of each fits the memory budget. Where a strategy
proposes its configurations as it runs, one per program shape its space allows stands for
them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from flaxmnist.devices.machine import format_bytes
from flaxmnist.errors import OutOfMemoryError, SettingsError
from flaxmnist.run.plan import Plan, widths
from flaxmnist.search.registry import strategy_class
from flaxmnist.specs.config import COMPUTE_DTYPES, MATMUL_PRECISIONS, Study
from flaxmnist.studies import load_studies


def resolve_studies(
    study: str | Path | Study | Sequence[Study], epochs: int | None, validate_on: str = "holdout"
) -> list[Study]:
    """The studies to run (by name, path or value), named apart, their epochs overridden;
    a learned search is checked by Optuna's rules, and refused where it would learn from the
    test set (``validate_on="test"``: what selects is what a sampler is told).

    Raises:
      SpecError, SettingsError: naming the study, or the parameter.
    """
    if isinstance(study, Study):
        studies = [study]
    elif isinstance(study, str | Path):
        studies = load_studies(study)
    else:
        studies = list(study)
    for one in studies:
        strategy = strategy_class(one.strategy, one.source)
        strategy.check(one)
        if strategy.learns and validate_on == "test":
            raise SettingsError(
                f"{one.name} searches with {one.strategy!r}, whose sampler is told the "
                "accuracy that selects: with the test set selecting it would learn from the "
                "test set; use the holdout",
                parameter="validate_on",
                value=validate_on,
            )
    names = [s.name for s in studies]
    if len(set(names)) != len(names):
        raise SettingsError(f"two studies share a name ({names}): results are kept by name")
    if epochs is not None and epochs < 1:
        raise SettingsError("must be >= 1", parameter="epochs", value=epochs)
    if epochs is None:
        return studies
    return [strategy_class(s.strategy).with_epochs(s, epochs) for s in studies]


def check_settings(
    seeds: int, max_lanes: int | None, memory_budget: int | None, dtype: str, precision: str
) -> None:
    if seeds < 1:
        raise SettingsError("must be >= 1", parameter="seeds", value=seeds)
    if max_lanes is not None and max_lanes < 1:
        raise SettingsError("must be >= 1", parameter="max_lanes", value=max_lanes)
    if memory_budget is not None and memory_budget < 1:
        raise SettingsError("must be >= 1 (bytes)", parameter="memory_budget", value=memory_budget)
    if dtype not in COMPUTE_DTYPES:
        raise SettingsError(
            f"expected one of {', '.join(COMPUTE_DTYPES)}", parameter="dtype", value=dtype
        )
    if precision not in MATMUL_PRECISIONS:
        raise SettingsError(
            f"expected one of {', '.join(MATMUL_PRECISIONS)}",
            parameter="precision",
            value=precision,
        )


def check_strategies(plan: Plan) -> None:
    """Each study's strategy checks its plan (a learned search whose every proposal would be
    made before anything is told is refused).

    Raises:
      SpecError: naming the study's spec and what to change.
    """
    for planned in plan.studies:
        strategy = strategy_class(planned.study.strategy)
        strategy.check_plan(planned.study, planned.round_size, planned.warm)


def check_memory(plan: Plan, budget: int, source: str) -> None:
    """Refuse, before anything runs, a configuration whose one lane exceeds ``budget``."""
    for planned in plan.studies:
        for spec, need in zip(planned.specs, planned.lane_bytes, strict=True):
            if need > budget:
                study = planned.study
                raise OutOfMemoryError(
                    f"{study.name} ({study.source}): one lane of {widths(spec)} needs about "
                    f"{format_bytes(need)} by flaxmnist's estimate, more than the memory "
                    f"budget of {format_bytes(budget)} ({source}; memory_budget, or "
                    "--memory-budget, sets it): make the model smaller"
                )


def check_batch_sizes(
    studies: Sequence[Study], train_size: int, limit_train: int | None = None
) -> None:
    """Refuse, before anything runs, a batch larger than the training set: in every
    configuration a study lists, or, where its strategy proposes them later, every shape
    its space allows (before a budget cuts any). Where ``--limit-train`` (``limit_train``)
    made the training set that small, the message names the flag, not the spec."""
    for study in studies:
        for config in strategy_class(study.strategy).planned_configs(study):
            if config.batch_size <= train_size:
                continue
            if limit_train is not None and limit_train == train_size:
                raise SettingsError(
                    f"{train_size} training images, fewer than one batch of study "
                    f"{study.name} (batch_size = {config.batch_size}): give "
                    f"{config.batch_size} or more",
                    parameter="limit_train",
                    value=limit_train,
                )
            raise SettingsError(
                f"{study.source}: batch_size = {config.batch_size}: larger than the "
                f"training set ({train_size} images)"
            )
