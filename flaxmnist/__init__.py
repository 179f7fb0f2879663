"""flaxmnist: hyperparameter studies of MNIST MLPs as one compiled, vmapped JAX program.

The public surface, for notebooks and your own loops::

    import jax
    import flaxmnist

    records = flaxmnist.run_sweep("lr", epochs=1, seeds=3)   # same dicts as results.jsonl
    print(flaxmnist.format_table(records))

    data = flaxmnist.make_splits(flaxmnist.load_mnist())      # uint8 arrays, holdout split
    spec = flaxmnist.TrainSpec(hidden=(300,), epochs=2)
    train = flaxmnist.make_train(spec)                        # pure: (hparams, key, data)
    params, history = jax.jit(train)(flaxmnist.make_hyperparams(spec, 1e-3),
                                     jax.random.key(0), data)

    model = flaxmnist.load_model("runs/lr-...")   # the best configuration a run kept
    labels = model.predict(images)                # (seeds, n), one row per seed
    votes = model.predict(images, ensemble=True)  # (n,): the seeds' mean softmax, argmax

The modules, bottom to top: ``errors``; ``data``, ``models``, ``specs``, ``progress``,
``machine``, ``augment`` (random shifts, rotations, scalings and elastic deformations of
a minibatch), ``optimizer`` (Adam as Keras 1 had it); ``sources``, ``studies``,
``losses``, ``space``; ``train``, ``compile_cache``,
``trials`` (a configuration's records as an Optuna trial); ``sampler`` (Optuna's samplers
proposing rounds); ``plan``, ``grid``, ``rundir``, ``records``; ``ensemble`` (the
seeds' ensemble, greedy ensembles of configurations); ``optuna_db`` (every run's
``optuna.db``); ``attempt``, ``report`` (reads results; none of its modules imports
anything that trains), ``checkpoint`` (pytrees on disk, and the best model a run kept:
``load_model``); ``loop``; ``search`` (halving, PBT), ``learned`` (Optuna's samplers over
lane grids); ``runner``; ``sweep`` (the command line), ``evaluate`` (``python -m
flaxmnist.evaluate RUN_DIR``: a kept model checked against its record, refitted).
"""

from flaxmnist.checkpoint import load_model
from flaxmnist.data import load_mnist, make_splits
from flaxmnist.errors import DataError, OutOfMemoryError, RunDirError, SettingsError, SpecError
from flaxmnist.progress import RunStats
from flaxmnist.report import (
    format_table,
    load_results,
    plot_accuracy,
    plot_curves,
    save_plots,
    summarize,
)
from flaxmnist.runner import run_sweep
from flaxmnist.specs import Config, Study
from flaxmnist.studies import load_study
from flaxmnist.train import TrainSpec, make_hyperparams, make_train, make_train_fns

__version__ = "0.1.0"

__all__ = [
    "Config",
    "DataError",
    "OutOfMemoryError",
    "RunDirError",
    "RunStats",
    "SettingsError",
    "SpecError",
    "Study",
    "TrainSpec",
    "format_table",
    "load_mnist",
    "load_model",
    "load_results",
    "load_study",
    "make_hyperparams",
    "make_splits",
    "make_train",
    "make_train_fns",
    "plot_accuracy",
    "plot_curves",
    "run_sweep",
    "save_plots",
    "summarize",
]
