"""What a researcher does today: an Optuna study whose objective trains one configuration at
a time, against which flaxmnist's ``tpe`` is measured (BENCHMARKS.md, "Against Optuna, trial
by trial").

    python benchmarks/optuna_sequential.py --seconds 600 --seed 0 --out DIR

Written as a careful user would, not with flaxmnist's training code: a Flax linen MLP (ReLU
hidden layers, dropout after each, input dropout), optax's AdamW with the decay on kernels
only (flaxmnist's ``weight_decay``: decoupled, Keras 1's Adam constants), label smoothing
with ``optax.smooth_labels``, random whole-pixel shifts of up to ``augment_shift`` pixels
(zero padded), minibatches of 200 reshuffled every epoch, 9 epochs, an epoch one jitted
``lax.scan`` over its minibatches with the hyperparameters as traced arguments, so a program
is compiled once per shape (depth and widths) and reused. The data and its split are
flaxmnist's: trained on the first 50,000 training images, selected on the last 10,000 (the
holdout), tested on the 10,000 test images.

The space is the search benchmark's (``reproduction/search-benchmark/specs.py``), suggested
by hand with ``trial.suggest_*``; the script checks that it names the same keys and bounds
as that spec. ``TPESampler(seed=seed)`` and ``study.optimize(objective, n_jobs=1,
timeout=seconds)``: Optuna starts no trial after the timeout and finishes the one running,
so the last trial is cut (``--seconds``, the same limit flaxmnist is killed at by
``run_optuna_sequential.sh``; a trial that ends past it is reported apart). Each finished
trial is a line of ``DIR/trials.jsonl``; the summary (trials finished within the limit, the
best holdout, the test accuracy of the pick) is printed and written to ``DIR/summary.json``.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # the limit counts from here, imports included, as for flaxmnist

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tomllib  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import optuna  # noqa: E402

from flaxmnist.core.data import load_mnist, make_splits  # noqa: E402 (the same split)

SPEC = ROOT / "reproduction" / "search-benchmark" / "specs" / "tpe-0.toml"
EPOCHS, BATCH = 9, 200
#: The space, by hand: (kind, low, high) as the spec's [search] says (checked in ``main``).
SPACE = {
    "learning_rate": ("log_uniform", 1e-4, 1e-2),
    "dropout": ("uniform", 0.0, 0.5),
    "input_dropout": ("uniform", 0.0, 0.3),
    "weight_decay": ("log_uniform", 1e-5, 1e-1),
    "label_smoothing": ("uniform", 0.0, 0.2),
}


class MLP(nn.Module):
    widths: tuple[int, ...]

    def drop(self, x, rate, train):
        """Inverted dropout at a traced rate (``nn.Dropout`` wants a Python number)."""
        if not train:
            return x
        keep = 1.0 - rate
        mask = jax.random.bernoulli(self.make_rng("dropout"), keep, x.shape)
        return jnp.where(mask, x / keep, 0.0)

    @nn.compact
    def __call__(self, x, dropout, input_dropout, train: bool):
        x = self.drop(x, input_dropout, train)
        for width in self.widths:
            x = self.drop(nn.relu(nn.Dense(width)(x)), dropout, train)
        return nn.Dense(10)(x)


def shift(images, key, pixels, most=2):
    """Each image moved by up to ``pixels`` whole pixels each way (zeros where nothing
    lands); ``pixels`` is traced, ``most`` the largest it may be."""
    padded = jnp.pad(images, ((0, 0), (most, most), (most, most)))
    offsets = jax.random.randint(key, (len(images), 2), -pixels, pixels + 1) + most
    crop = jax.vmap(lambda image, o: jax.lax.dynamic_slice(image, (o[0], o[1]), (28, 28)))
    return crop(padded, offsets)


def make_programs(widths):
    """``(init, epoch, accuracy)`` for one shape, jitted once (hyperparameters traced)."""
    model = MLP(widths)

    def optimizer(h):
        mask = lambda params: jax.tree_util.tree_map_with_path(  # noqa: E731
            lambda path, _: path[-1].key == "kernel", params
        )
        return optax.adamw(h["learning_rate"], 0.9, 0.999, 1e-8, h["weight_decay"], mask=mask)

    def init(key, h):
        params = model.init(key, jnp.zeros((1, 784)), 0.0, 0.0, False)
        return params, optimizer(h).init(params)

    def epoch(params, opt_state, h, images, labels, key):
        order_key, key = jax.random.split(key)
        order = jax.random.permutation(order_key, len(labels))
        batches = order[: len(order) // BATCH * BATCH].reshape(-1, BATCH)

        def step(carry, batch):
            params, opt_state, key = carry
            key, drop_key, shift_key = jax.random.split(key, 3)
            x = shift(images[batch].astype(jnp.float32) / 255, shift_key, h["shift"])
            targets = optax.smooth_labels(jax.nn.one_hot(labels[batch], 10), h["smoothing"])

            def loss(p):
                logits = model.apply(
                    p, x.reshape(BATCH, 784), h["dropout"], h["input_dropout"], True,
                    rngs={"dropout": drop_key},
                )  # fmt: skip
                return optax.softmax_cross_entropy(logits, targets).mean()

            grads = jax.grad(loss)(params)
            updates, opt_state = optimizer(h).update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state, key), None

        (params, opt_state, _), _ = jax.lax.scan(step, (params, opt_state, key), batches)
        return params, opt_state

    def accuracy(params, images, labels):
        x = images.reshape(len(images), 784).astype(jnp.float32) / 255
        logits = model.apply(params, x, 0.0, 0.0, False)
        return jnp.mean(jnp.argmax(logits, -1) == labels)

    return jax.jit(init), jax.jit(epoch, donate_argnums=(0, 1)), jax.jit(accuracy)


def objective_of(splits, programs, out):
    def objective(trial):
        depth = trial.suggest_int("hidden.depth", 1, 3)
        widths = tuple(trial.suggest_int(f"hidden.width_{i}", 32, 2048, log=True)
                       for i in range(1, depth + 1))  # fmt: skip
        h = {
            key: trial.suggest_float(key, low, high, log=kind == "log_uniform")
            for key, (kind, low, high) in SPACE.items()
        }
        h["shift"] = trial.suggest_categorical("augment_shift", [0, 1, 2])
        h["smoothing"], start = h.pop("label_smoothing"), time.perf_counter()
        if widths not in programs:
            programs[widths] = make_programs(widths)
        init, epoch, accuracy = programs[widths]
        key = jax.random.key(trial.number)
        params, opt_state = init(key, h)
        for e in range(EPOCHS):
            params, opt_state = epoch(
                params, opt_state, h, splits.train_images, splits.train_labels,
                jax.random.fold_in(key, e),
            )  # fmt: skip
        holdout = float(accuracy(params, splits.val_images, splits.val_labels))
        test = float(accuracy(params, splits.test_images, splits.test_labels))
        trial.set_user_attr("test_accuracy", test)
        line = {"number": trial.number, "params": trial.params, "val_accuracy": holdout,
                "test_accuracy": test, "seconds": time.perf_counter() - start,
                "finished_at": time.perf_counter() - STARTED}  # fmt: skip
        with open(out / "trials.jsonl", "a") as file:
            file.write(json.dumps(line) + "\n")
        return holdout

    return objective


def check_space() -> None:
    """The hand-written space is the benchmark spec's."""
    space = tomllib.loads(SPEC.read_text())["search"]
    assert space["hidden"] == {"depth": [1, 3], "log_uniform": [32, 2048]}, space["hidden"]
    assert space["augment_shift"] == {"choice": [0, 1, 2]}
    for key, (kind, low, high) in SPACE.items():
        assert space[key] == {kind: [low, high]}, (key, space[key])
    assert set(space) == {*SPACE, "hidden", "augment_shift"}


def summarize(folder: Path, seconds: float) -> None:
    """The table of ``optuna_sequential.sh``'s runs in ``folder``: per tool and repeat, the
    trials finished within the limit, the best holdout and the test accuracy of the pick."""
    from flaxmnist.report.compare import selected
    from flaxmnist.run.rundir import read_jsonl

    rows = {"optuna-sequential": [], "flaxmnist tpe": []}
    for path in sorted(folder.glob("optuna-*/summary.json")):
        done = json.loads(path.read_text())
        trials = [
            json.loads(line) for line in (path.parent / "trials.jsonl").read_text().splitlines()
        ]
        spent = sum(training_flops(t["params"]) for t in trials if t["finished_at"] <= seconds)
        rows["optuna-sequential"].append(
            (done["seed"], done["trials_finished"], done["best_val_accuracy"],
             done["test_accuracy_of_pick"], spent)
        )  # fmt: skip
    for path in sorted(folder.glob("flaxmnist-*/results.jsonl")):
        records = read_jsonl(path)
        val, test = selected(records) if records else (float("nan"),) * 2
        repeat, spent = int(path.parent.name.split("-")[1]), sum(r["compute"] for r in records)
        count = len({r["config_index"] for r in records})
        rows["flaxmnist tpe"].append((repeat, count, val, test, spent))
    print(f"limit: {seconds:.0f} s of wall-clock time per run, from the process's start")
    print(
        f"{'tool':<18}  repeat  trials finished  best holdout %  test % of the pick  "
        "training FLOPs of the trials finished"
    )
    for tool, runs in rows.items():
        for repeat, count, val, test, spent in runs:
            print(
                f"{tool:<18}  {repeat:>6}  {count:>15}  {100 * val:>14.2f}  {100 * test:>18.2f}"
                f"  {spent:.3e}"
            )
        if len(runs) > 1:
            counts, vals, tests, spent = (
                np.array([r[i] for r in runs], float) for i in (1, 2, 3, 4)
            )
            print(
                f"{tool + ' mean':<18}  {'':>6}  {counts.mean():>9.1f} ± {counts.std(ddof=1):<4.1f}"
                f"  {100 * vals.mean():>7.2f} ± {100 * vals.std(ddof=1):.2f}"
                f"  {100 * tests.mean():>11.2f} ± {100 * tests.std(ddof=1):.2f}"
                f"  {spent.mean():.3e}"
            )


def training_flops(params: dict) -> float:
    """flaxmnist's count (``plan.train_flops``): 6 per weight per training image, 50,000
    images, ``EPOCHS`` epochs."""
    sizes = [784, *(params[f"hidden.width_{i}"] for i in range(1, params["hidden.depth"] + 1)), 10]
    return 6 * 50_000 * EPOCHS * sum(a * b for a, b in zip(sizes, sizes[1:], strict=False))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit-train", type=int, help="quick looks only")
    parser.add_argument("--out", type=Path, help="where this run's trials go")
    parser.add_argument("--summarize", type=Path, metavar="DIR", help="optuna_sequential.sh's runs")
    args = parser.parse_args(argv)
    if args.summarize is not None:
        summarize(args.summarize, args.seconds)
        return 0
    if args.out is None:
        parser.error("--out DIR is needed to run")
    check_space()
    args.out.mkdir(parents=True, exist_ok=False)
    splits = jax.device_put(make_splits(load_mnist(), limit_train=args.limit_train))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=args.seed)
    )
    left = args.seconds - (time.perf_counter() - STARTED)
    study.optimize(objective_of(splits, {}, args.out), n_jobs=1, timeout=left)
    trials = [json.loads(line) for line in (args.out / "trials.jsonl").read_text().splitlines()]
    within = [t for t in trials if t["finished_at"] <= args.seconds]
    best = max(within, key=lambda t: t["val_accuracy"])
    summary = {
        "tool": "optuna-sequential", "seed": args.seed, "seconds": args.seconds,
        "trials_finished": len(within), "trials_past_the_limit": len(trials) - len(within),
        "best_val_accuracy": best["val_accuracy"], "test_accuracy_of_pick": best["test_accuracy"],
        "pick": best["params"], "devices": [str(d) for d in jax.devices()],
    }  # fmt: skip
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
