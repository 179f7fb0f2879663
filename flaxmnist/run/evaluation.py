"""The best model a run kept, evaluated again: its seeds' test accuracy as training computed
it, their ensemble's, and the study that refits its configuration.

A sweep with a run directory keeps, for each study, its best configuration (the highest mean
validation accuracy, ``info["selected_by"]``) in ``RUN_DIR/models/<study>/``: ``model.json``
and every seed's ``params.msgpack`` (``flaxmnist.run.checkpoint``, ``load_model``).

In a notebook::

    import flaxmnist
    from flaxmnist.run.evaluation import evaluate_ensemble, evaluate_test

    model = flaxmnist.load_model("runs/lr-20250101-120000")  # study: the only one saved
    model.info["config"]                  # every hyperparameter, and the data it trained on
    logits = model(images)                # uint8 (n, 28, 28) or (n, 784) -> (seeds, n, 10)
    labels = model.predict(images)        # (seeds, n): one prediction per seed
    ensemble = logits.mean(axis=0).argmax(-1)   # or average the seeds yourself

    evaluate_test(model)                  # each seed's test accuracy, as the run recorded it
    evaluate_ensemble(model)              # the seeds' ensemble's (mean softmax)

``evaluate_test`` computes the test accuracy with training's own evaluation
(``make_evaluate``, chunks of 1,000, no dropout), so each seed's value equals the
record's, float32 for float32: ``python -m flaxmnist.evaluate`` checks that.

``refit_sweep`` says how to train the configuration again on every training image (the
holdout too), selecting nothing: the study and ``run_sweep``'s arguments. Its test accuracy
is an honest estimate; ``flaxmnist.evaluate.refit`` (``--refit``) runs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np

from flaxmnist.core.data import DataSplits, make_splits
from flaxmnist.core.losses import make_probabilities
from flaxmnist.core.sources import TFDS_PREFIX, load_dataset
from flaxmnist.core.train import TrainSpec, make_evaluate
from flaxmnist.run.checkpoint import Model
from flaxmnist.run.ensemble import ensemble_accuracy
from flaxmnist.run.records import json_float
from flaxmnist.specs.config import CONFIG_KEYS, Config, Study

#: The chunk size training evaluates with (``TrainSpec``'s default, which the runner keeps).
EVAL_BATCH_SIZE = TrainSpec().eval_batch_size


def data_source(dataset: str) -> tuple[str, str | None]:
    """A record's ``config["dataset"]`` as ``run_sweep``'s ``(dataset, data_dir)``: the
    runner records a ``data_dir`` in place of the dataset's name."""
    if dataset == "mnist" or dataset.startswith(TFDS_PREFIX):
        return dataset, None
    return "mnist", dataset


def load_splits(config: dict[str, Any]) -> DataSplits:
    """The splits a configuration trained with (``dataset``, ``validate_on``; the whole
    train split: only the test set is the same whatever ``train_size`` was)."""
    dataset, data_dir = data_source(config.get("dataset", "mnist"))
    return make_splits(load_dataset(dataset, data_dir), config.get("validate_on", "holdout"))


def evaluate_test(model: Model, data: Any = None) -> list[float]:
    """Each seed's test accuracy, computed as training computed it (``make_evaluate``,
    chunks of ``EVAL_BATCH_SIZE``, vmapped over seeds), as the record's float32 values.

    ``data``: anything with ``test_images`` and ``test_labels`` (``DataSplits``,
    ``MnistArrays``); default: the dataset the model trained on.
    """
    data = load_splits(model.config) if data is None else data
    loss = model.config.get("loss", "cross_entropy")
    evaluate = jax.vmap(make_evaluate(model.module, EVAL_BATCH_SIZE, loss), (0, None, None))
    images, labels = jax.device_put((data.test_images, data.test_labels))
    _, accuracy = jax.jit(evaluate)(model.require_params(), images, labels)
    return [json_float(value) for value in np.asarray(accuracy)]


def evaluate_ensemble(model: Model, data: Any = None) -> float:
    """The test accuracy of the ensemble of ``model``'s seeds: the argmax of their mean
    softmax probabilities (``ensemble.ensemble_accuracy``), computed in chunks as training
    computed the record's. ``data`` as for ``evaluate_test``."""
    data = load_splits(model.config) if data is None else data
    probabilities = jax.vmap(make_probabilities(model.module, EVAL_BATCH_SIZE), (0, None))
    probs = jax.jit(probabilities)(model.require_params(), jax.device_put(data.test_images))
    return ensemble_accuracy(np.asarray(probs), data.test_labels)


def refit_sweep(
    run_dir: str | Path, model: Model, seeds: int | None = None, first_seed: int | None = None
) -> tuple[Study, dict[str, Any]]:
    """The refit of ``model``'s configuration (its parameters are not needed): a study of
    that one configuration, and the arguments with which ``run_sweep`` trains it again on
    the whole training set, validating on the test set (nothing is selected). Its seeds:
    the model's, or ``seeds`` from ``first_seed`` (fresh ones, which the search never used);
    its records: ``run_dir/refit-<study>`` (``refit-<study>-seeds-N-M`` for other seeds),
    resumed when it exists."""
    config, name = model.config, model.info["study"]
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    fixed = Config(**{k: values[k] for k in CONFIG_KEYS if k in values})
    number = model.info["config_index"] + 1
    description = f"refit of {name}'s configuration {number} on every training image"
    study = Study(name=name, description=description, configs=(fixed,), varied=())
    dataset, data_dir = data_source(config.get("dataset", "mnist"))
    count = len(model.seeds) if seeds is None else seeds
    first = min(model.seeds) if first_seed is None else first_seed
    folder = f"refit-{name}"
    if (count, first) != (len(model.seeds), min(model.seeds)):
        folder += f"-seeds-{first}-{first + count - 1}"
    return study, {
        "seeds": count,
        "first_seed": first,
        "validate_on": "test",
        "dataset": dataset,
        "data_dir": data_dir,
        "dtype": config.get("dtype", "float32"),
        "out": Path(run_dir) / folder,
    }
