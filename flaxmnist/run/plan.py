"""Planning, pure: configurations → groups (one program each) → calls (lanes per call).

Configurations that share every static setting (layer widths, epochs, batch size, the
regularisers in use, the protocol, the dtype) form a *group*: one compiled program. A *call*
trains a grid of a group's configurations × seeds, the *lanes*, at once; a group is split
into calls by a lane cap and a memory estimate. Nothing here touches a device.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from flaxmnist.core.augment import Augment
from flaxmnist.core.models import param_count
from flaxmnist.core.train import Hyperparams, TrainSpec, make_hyperparams
from flaxmnist.devices.machine import FALLBACK_MEMORY_BUDGET
from flaxmnist.errors import FlaxmnistWarning, SettingsError
from flaxmnist.specs.config import Config, Study
from flaxmnist.specs.keys import CONFIG, features, lanes

#: On a CPU, lanes per call when neither ``max_lanes`` nor the memory budget asks for fewer
#: (the fastest per lane measured, BENCHMARKS.md). Accelerators get no such cap.
DEFAULT_MAX_LANES = 24
#: ``TrainSpec`` flags of what a program may compile out (a configuration's rate is 0).
FEATURES = tuple(features())
INPUT_SIZE = 784


@dataclass(frozen=True)
class Group:
    """Configurations that share a compiled program (the same static ``TrainSpec``)."""

    spec: TrainSpec
    config_indices: tuple[int, ...]


@dataclass(frozen=True)
class Call:
    """One compiled call: configurations × seeds of one study that share a ``TrainSpec``."""

    study_index: int
    spec: TrainSpec
    config_indices: tuple[int, ...]
    seeds: tuple[int, ...]

    @property
    def lanes(self) -> tuple[tuple[int, int], ...]:
        """``(config_index, seed)`` pairs, configuration-major."""
        return tuple((c, seed) for c in self.config_indices for seed in self.seeds)


def train_spec_of(config: Config, val_is_test: bool = False, dtype: str = "float32") -> TrainSpec:
    """The static part of a configuration, with the run's protocol and dtype: its static
    keys (``keys.toml``: ``role = "static"``), and a flag per feature that is on where one
    of its lane keys is in use.

    Regularisers and features a configuration does not use are compiled out
    (``FEATURES``): exact, and cheaper, so configurations without dropout never share a
    call with ones that have it.
    """
    static, augment = {}, {}
    for key in CONFIG.values():
        if key.role == "static":
            field, _, part = key.spec_field.partition(".")
            value = getattr(config, key.name)
            (augment if part else static)[part or field] = value
    if static["parameterization"] == "standard":  # read only under "mup": one program for all
        static["mup_base_width"] = CONFIG["mup_base_width"].default
    in_use = {
        flag: any(key.in_use(config.applied(key.name)) for key in served)
        for flag, served in features().items()
    }
    return TrainSpec(
        **static, **in_use, val_is_test=val_is_test, compute_dtype=dtype, augment=Augment(**augment)
    )


def hyperparams_of(spec: TrainSpec, config: Config) -> Hyperparams:
    """The hyperparameters of ``config``, for a program of ``spec``: every lane array
    (``Hyperparams``' fields), each the value training applies of its key."""
    values = {name: config.applied(key.name) for name, key in lanes().items()}
    return make_hyperparams(spec, **values)


def widths(spec: TrainSpec) -> str:
    """The layer widths of ``spec``: ``784-300-10``."""
    return "-".join(str(w) for w in (784, *spec.hidden, spec.num_classes))


def group_configs(
    configs: Sequence[Config],
    val_is_test: bool = False,
    split_regularisers: bool = True,
    dtype: str = "float32",
    pad_widths: bool = False,
) -> list[Group]:
    """Group configurations by their static settings, keeping first-seen order.

    With ``split_regularisers=False`` configurations of one shape share a program whatever
    regularisers they use (it then has every regulariser any of them uses); with
    ``pad_widths`` configurations of one depth share a program whatever their widths (it
    has the widest of each layer, ``TrainSpec.padded``; ``models.mask_padding``). Both mean
    fewer compiles, for accelerators, where compiling costs more than the extra arithmetic.
    """
    specs = derive(configs, PlanSettings(val_is_test=val_is_test, dtype=dtype))
    return group_specs(specs, split_regularisers, pad_widths)


def group_specs(
    specs: Sequence[TrainSpec], split_regularisers: bool = True, pad_widths: bool = False
) -> list[Group]:
    """``group_configs`` for configurations whose ``TrainSpec`` is known (``specs``, one
    per configuration, in order)."""
    groups: dict[TrainSpec, list[int]] = {}
    for index, spec in enumerate(specs):
        if not split_regularisers:
            spec = replace(spec, **dict.fromkeys(FEATURES, False))
        if pad_widths:
            spec = replace(spec, hidden=(1,) * len(spec.hidden))
        groups.setdefault(spec, []).append(index)
    result = []
    for spec, indices in groups.items():
        members = [specs[i] for i in indices]
        spec = replace(spec, **{f: any(getattr(m, f) for m in members) for f in FEATURES})
        widths = {m.hidden for m in members}
        widest = tuple(max(layer) for layer in zip(*widths, strict=True))
        spec = replace(spec, hidden=widest, padded=len(widths) > 1)
        result.append(Group(spec, tuple(indices)))
    return result


def train_flops(spec: TrainSpec, train_size: int, input_size: int = INPUT_SIZE) -> int:
    """The compute of one lane-epoch, the unit of ``--budget``: training FLOPs, counted as
    6 per weight per training image (2 for the forward multiply-add, 4 for the backward
    pass's two), ``6 * train_size * sum(fan_in * fan_out)``. Biases, activations, dropout,
    Adam and evaluation are not counted.

    Example::

        >>> train_flops(TrainSpec(hidden=(300,)), 50_000)  # 784-300-10, one epoch
        71460000000
    """
    sizes = [input_size, *spec.hidden, spec.num_classes]
    return 6 * train_size * sum(a * b for a, b in zip(sizes, sizes[1:], strict=False))


def lane_bytes(spec: TrainSpec, input_size: int = INPUT_SIZE) -> int:
    """A generous estimate of the device memory one lane needs while it trains.

    Parameters, gradients, Adam's two moments and the update (6 copies of the weights), the
    activations of one training step (inputs, and per hidden unit its pre-activation,
    activation and dropout mask), and one evaluation chunk, all float32, times 1.5 for
    XLA's temporaries.
    """
    params = param_count(input_size, spec.hidden, spec.num_classes)
    units = sum(spec.hidden) + spec.num_classes
    step = spec.batch_size * (input_size + 3 * units)
    evaluation = spec.eval_batch_size * (input_size + 2 * units)
    return int(1.5 * 4 * (6 * params + step + evaluation))


def lanes_per_call(spec: TrainSpec, max_lanes: int | None, budget: int, cap: int | None) -> int:
    """``max_lanes`` if given, else as many as ``budget`` allows up to ``cap``; at least 1."""
    if max_lanes:
        return max_lanes
    size = budget // lane_bytes(spec)
    return max(1, size if cap is None else min(size, cap))


def plan_calls(
    studies_configs: Sequence[Sequence[Config]],
    seeds: int | Sequence[int],
    *,
    max_lanes: int | None = None,
    memory_budget: int = FALLBACK_MEMORY_BUDGET,
    val_is_test: bool = False,
    dtype: str = "float32",
    lane_cap: int | None = DEFAULT_MAX_LANES,
    split_regularisers: bool = True,
    pad_widths: bool = False,
) -> list[Call]:
    """Split every study's groups into calls of configurations × seeds, in study order.

    ``seeds``: a count (seeds 0 … N-1) or the seeds themselves. A call holds
    ``lanes_per_call`` lanes at most. All seeds of a configuration share a call when the size
    allows (then a call is whole configurations × every seed); otherwise a configuration's
    seeds are split over calls.
    """
    seeds = tuple(range(seeds)) if isinstance(seeds, int) else tuple(seeds)
    settings = PlanSettings(
        max_lanes, memory_budget, val_is_test, dtype, lane_cap, split_regularisers, pad_widths
    )
    calls = []
    for study_index, configs in enumerate(studies_configs):
        calls += calls_of(study_index, derive(configs, settings), seeds, settings)
    return calls


def calls_of(
    study_index: int, specs: Sequence[TrainSpec], seeds: tuple[int, ...], settings: PlanSettings
) -> list[Call]:
    """The calls of one study whose configurations' ``specs`` are known (``plan_calls``)."""
    calls = []
    for group in group_specs(specs, settings.split_regularisers, settings.pad_widths):
        size = settings.lanes(group.spec)
        calls += split_call(Call(study_index, group.spec, group.config_indices, seeds), size)
    return calls


def split_call(call: Call, lanes: int) -> list[Call]:
    """``call`` as calls of at most ``lanes`` lanes: whole configurations × the call's seeds
    when ``lanes`` holds all its seeds, else one configuration's seeds in chunks.

    Example::

        >>> call = Call(0, TrainSpec(hidden=(8,)), (0, 1, 2), (0, 1))
        >>> [len(c.lanes) for c in split_call(call, 4)], [len(c.lanes) for c in split_call(call, 1)]
        ([4, 2], [1, 1, 1, 1, 1, 1])
    """
    if lanes < 1:
        raise ValueError(f"lanes must be >= 1, got {lanes}")
    seeds = call.seeds
    if lanes >= len(seeds):
        per_call = lanes // len(seeds)
        return [
            replace(call, config_indices=call.config_indices[start : start + per_call])
            for start in range(0, len(call.config_indices), per_call)
        ]
    return [
        replace(call, config_indices=(index,), seeds=seeds[start : start + lanes])
        for index in call.config_indices
        for start in range(0, len(seeds), lanes)
    ]


def within_budget(
    study: Study, specs: Sequence[TrainSpec], seeds: int, left: float, budget: float, size: int
) -> tuple[int, float]:
    """How many of ``study``'s configurations, in order, fit the ``left`` of ``budget``
    (training FLOPs, every seed; ``specs`` theirs, ``size`` the training images), and what
    is left after them; warns when it is not all of them.

    Raises:
      SettingsError: not even the first configuration fits.
    """
    count = 0
    for config, spec in zip(study.configs, specs, strict=True):
        cost = seeds * config.epochs * train_flops(spec, size)
        if cost > left:
            break
        count, left = count + 1, left - cost
    if not count:
        raise SettingsError(
            f"{study.name}: its first configuration needs {cost:.4g} training FLOPs, "
            f"more than the {left:.4g} left",
            parameter="budget",
            value=budget,
        )
    if count < len(study.configs):
        warnings.warn(
            f"{study.name}: the budget of {budget:.4g} training FLOPs holds "
            f"{count} of its {len(study.configs)} configurations",
            FlaxmnistWarning,
            stacklevel=4,
        )
    return count, left


@dataclass(frozen=True)
class PlanSettings:
    """How a run's configurations become programs and calls (``plan_calls``' keywords)."""

    max_lanes: int | None = None
    memory_budget: int = FALLBACK_MEMORY_BUDGET
    val_is_test: bool = False
    dtype: str = "float32"
    lane_cap: int | None = DEFAULT_MAX_LANES
    split_regularisers: bool = True
    pad_widths: bool = False

    def lanes(self, spec: TrainSpec, capped: bool = True) -> int:
        """Lanes one call of ``spec`` holds (``lanes_per_call``); ``capped=False``: one grid
        of a stepped study, which the CPU's lane cap does not bound."""
        cap = self.lane_cap if capped else None
        return lanes_per_call(spec, self.max_lanes, self.memory_budget, cap)


def derive(configs: Sequence[Config], settings: PlanSettings) -> tuple[TrainSpec, ...]:
    """Each configuration's ``TrainSpec`` under the run's protocol and dtype: the one place
    a run derives them (the plan once per configuration; a proposing strategy's each round)."""
    return tuple(train_spec_of(c, settings.val_is_test, settings.dtype) for c in configs)


@dataclass(frozen=True)
class StudyPlan:
    """One study, planned.

    Attributes:
      study: the study (its configurations those the budget holds).
      configs: its configurations, or, where its strategy proposes them as it runs, one per
        program shape its space allows (``proposed``), which the checks before the run see.
      specs: each configuration's ``TrainSpec``.
      proposed: ``configs`` stand for configurations proposed later.
      round_size: a proposing strategy's configurations per round (every seed of each in
        one call of the largest shape).
      warm: finished configurations of an earlier run its strategy is told first
        (``--warm-start``).
    """

    study: Study
    configs: tuple[Config, ...]
    specs: tuple[TrainSpec, ...]
    proposed: bool = False
    round_size: int = 0
    warm: int = 0

    @property
    def lane_bytes(self) -> tuple[int, ...]:
        """Each configuration's memory per lane (``lane_bytes``)."""
        return tuple(lane_bytes(spec) for spec in self.specs)

    def flops(self, train_size: int) -> tuple[int, ...]:
        """Each configuration's training FLOPs per lane and epoch (``train_flops``)."""
        return tuple(train_flops(spec, train_size) for spec in self.specs)


@dataclass(frozen=True)
class Plan:
    """A run, planned before anything trains: every study with its configurations'
    ``TrainSpec``s, and the calls of the studies trained up front. The checks before the
    run (``preflight``) inspect it; the run (``loop.SweepLoop``) consumes it."""

    studies: tuple[StudyPlan, ...]
    calls: tuple[Call, ...]
    seeds: tuple[int, ...]
    settings: PlanSettings


def make_plan(
    studies: Sequence[Study],
    strategies: Sequence[Any],
    seeds: tuple[int, ...],
    settings: PlanSettings,
    train_size: int,
    budget: float | None = None,
    warm: Mapping[str, int] | None = None,
) -> Plan:
    """Plan ``studies``, each searched by its strategy's class (``search.base.Strategy``:
    ``planned_configs``, ``up_front``, ``proposes``). An up-front study keeps the
    configurations that fit ``budget`` (in order, the earlier studies' counted) and becomes
    calls; the others are planned for their strategy to train as it decides.

    Raises:
      SettingsError: not even the first configuration of an up-front study fits ``budget``.
    """
    planned, calls, left = [], [], budget
    for index, (study, strategy) in enumerate(zip(studies, strategies, strict=True)):
        configs = tuple(strategy.planned_configs(study))
        specs = derive(configs, settings)
        if strategy.up_front and budget is not None:
            count, left = within_budget(study, specs, len(seeds), left, budget, train_size)
            configs, specs = configs[:count], specs[:count]
            study = replace(study, configs=configs)
        size = 0
        if strategy.proposes or strategy.refills:
            widest = max(specs, key=lane_bytes)
            size = max(1, settings.lanes(widest) // len(seeds))
        told = (warm or {}).get(study.name, 0)
        planned.append(StudyPlan(study, configs, specs, strategy.proposes, size, told))
        if strategy.up_front:
            calls += calls_of(index, specs, seeds, settings)
    return Plan(tuple(planned), tuple(calls), seeds, settings)
