"""The early horizon of the golden spec, as made or with a deliberate change of numerics, to
show that the golden comparison catches the change (``tests/test_golden.py``). Usage::

    XLA_FLAGS=--xla_force_host_platform_device_count=2 \
        python tests/golden/perturb.py OUTDIR [--lanes all|few] CHANGE...

writes ``OUTDIR/CHANGE.jsonl`` for each CHANGE:

- ``none``: as the golden files were made (the API on 2 CPU devices equals the CLI);
- ``eps10``: Adam's epsilon 10 times larger;
- ``lr101``: every learning rate 1 % larger;
- ``steps``: one step fewer (400 training images: 2 steps of 200 instead of 3);
- ``dropkey``: every dropout mask drawn from another key (the dropout key folded once more).

``--lanes few`` (the test's) trains 9 of the 60 configurations: ``FEW``, two programs, so
that the check takes seconds; their records keep the golden ``config_index``. Changes that
patch what is traced (``eps10``, ``dropkey``) compile their own programs; the others reuse
the process's.
"""

import argparse
import contextlib
import dataclasses
import json
from pathlib import Path
from unittest import mock

import jax

import flaxmnist
from flaxmnist.core import optimizer
from flaxmnist.run import programs
from flaxmnist.studies import load_studies

GOLDEN_SPEC = Path(__file__).resolve().parent / "golden.toml"
CHANGES = ("none", "eps10", "lr101", "steps", "dropkey")
#: ``--lanes few``: per study, the configurations kept (learning rates 1.0, 0.1 and 0.001
#: to 0.0007; three-layer 300-150 without dropout and with two rates).
FEW = {"lr": (0, 1, 3, 9, 15, 21), "three-layer": (0, 4, 8)}


def other_dropout_key(split):
    """``jax.random.split`` where every three-way split hands back its third key folded once
    more: ``train``'s (init, shuffle, dropout) split and, at three steps an epoch, the
    steps' dropout keys. So every dropout mask changes, and nothing else."""

    def patched(key, num=2, **kwargs):
        keys = split(key, num, **kwargs)
        return keys.at[2].set(jax.random.fold_in(keys[2], 7)) if num == 3 else keys

    return patched


def forget_compiled_programs() -> None:
    """Drop the programs this process compiled, so that the next run traces anew."""
    programs._COMPILED.clear()
    jax.clear_caches()


def with_learning_rates_scaled(studies: list, factor: float) -> list:
    return [
        dataclasses.replace(
            study,
            configs=tuple(
                dataclasses.replace(c, learning_rate=c.learning_rate * factor)
                for c in study.configs
            ),
        )
        for study in studies
    ]


def run(change: str, studies: list, indices: dict) -> list[dict]:
    """The early horizon's records with ``change`` applied, ``config_index`` as in the spec."""
    limit, patch = 600, contextlib.nullcontext()
    if change == "eps10":
        patch = mock.patch.object(optimizer, "ADAM_EPS", optimizer.ADAM_EPS * 10)
    elif change == "lr101":
        studies = with_learning_rates_scaled(studies, 1.01)
    elif change == "steps":
        limit = 400
    elif change == "dropkey":
        patch = mock.patch.object(jax.random, "split", other_dropout_key(jax.random.split))
    patched = not isinstance(patch, contextlib.nullcontext)
    with patch:
        if patched:
            forget_compiled_programs()
        records = flaxmnist.run_sweep(
            studies, epochs=1, limit_train=limit, seeds=2, validate_on="holdout", quiet=True
        )
        if patched:
            forget_compiled_programs()
    for record in records:
        record["config_index"] = indices[record["study"]][record["config_index"]]
    return records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("changes", nargs="+", choices=CHANGES, metavar="CHANGE")
    parser.add_argument("--lanes", choices=("all", "few"), default="all")
    args = parser.parse_args(argv)
    studies = load_studies(str(GOLDEN_SPEC))
    indices = {study.name: tuple(range(len(study.configs))) for study in studies}
    if args.lanes == "few":
        indices = {study.name: FEW[study.name] for study in studies}
        studies = [
            dataclasses.replace(study, configs=tuple(study.configs[i] for i in FEW[study.name]))
            for study in studies
        ]
    args.outdir.mkdir(parents=True, exist_ok=True)
    for change in args.changes:
        records = run(change, studies, indices)
        lines = "".join(json.dumps(record) + "\n" for record in records)
        (args.outdir / f"{change}.jsonl").write_text(lines)


if __name__ == "__main__":
    main()
