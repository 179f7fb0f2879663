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
"""

from flaxmnist.data import DataError, DataSplits, MnistArrays, load_mnist, make_splits
from flaxmnist.models import MLP, dropout, param_count
from flaxmnist.report import format_table, summarize
from flaxmnist.runner import GridRun, SettingsError, enable_compilation_cache, run_sweep
from flaxmnist.specs import Config, SpecError, Study, load_studies, load_study
from flaxmnist.train import (
    Hyperparams,
    TrainSpec,
    TrainState,
    make_hyperparams,
    make_train,
    make_train_fns,
    stack_hyperparams,
)

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "Config",
    "DataError",
    "DataSplits",
    "GridRun",
    "Hyperparams",
    "MnistArrays",
    "SettingsError",
    "SpecError",
    "Study",
    "TrainSpec",
    "TrainState",
    "dropout",
    "enable_compilation_cache",
    "format_table",
    "load_mnist",
    "load_studies",
    "load_study",
    "make_hyperparams",
    "make_splits",
    "make_train",
    "make_train_fns",
    "param_count",
    "run_sweep",
    "stack_hyperparams",
    "summarize",
]
