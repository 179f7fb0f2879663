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

The package, bottom to top (data flows one way; no module imports from a layer above):

- ``errors``, ``interrupts``, ``cli``: the error types, a Ctrl-C that always stops, the
  command lines' argument types.
- ``specs``: what a sweep trains, as data (``Config``, ``Study``, grid and search specs,
  the built-in studies).
- ``core``: training's pure core (data, the MLP, augmentation, losses, Adam, ``make_train``).
- ``devices``: where the lanes run (memory, CPU devices, the lane mesh, many hosts, the
  compilation cache).
- ``run``: a study run call by call (``LaneGrid``, ``SweepLoop``) and the run directory it
  leaves (records, checkpoints, ``load_model``, ensembles).
- ``search``: configurations proposed (random, halving, PBT; Optuna's samplers).
- ``report``: tables, CSV and plots from records; trains nothing.
- ``runner`` (``run_sweep``), and the commands ``sweep``, ``evaluate`` and ``report``.
"""

from flaxmnist.core.data import load_mnist, make_splits
from flaxmnist.core.train import TrainSpec, make_hyperparams, make_train, make_train_fns
from flaxmnist.errors import DataError, OutOfMemoryError, RunDirError, SettingsError, SpecError
from flaxmnist.report import (
    format_table,
    load_results,
    plot_accuracy,
    plot_curves,
    save_plots,
    summarize,
)
from flaxmnist.run.checkpoint import load_model
from flaxmnist.run.progress import RunStats
from flaxmnist.runner import SweepSettings, run_sweep
from flaxmnist.specs.config import Config, Study
from flaxmnist.studies import load_study

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
    "SweepSettings",
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
