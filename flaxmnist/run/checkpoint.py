"""Pytrees of arrays on disk, and the best model of each study kept in the run directory.

``save_tree(path, tree)`` writes any pytree of arrays (a Flax params dict, a ``TrainState``
with Adam's state, leading lane axes and all) as msgpack, through
``flax.serialization``: the tree's state dict (``to_state_dict``) with its arrays as numpy
arrays, written atomically (temp file in the same folder, fsync, rename), so that a kill at
any moment leaves the old file or the new one. ``load_tree(path, target)`` reads it back
into the structure of ``target`` (the same NamedTuples, dicts and dtypes; shapes are
checked), or, with no target, as the nested dicts of numpy arrays that were written.

The run directory keeps the best model of each study, as the training loop saves it after
every call whose best configuration beats the saved one::

    RUN_DIR/models/<study>/params.msgpack   # {"params": {"hidden_0": {"kernel", "bias"},
                                            #  ..., "output": {...}}}, float32 numpy, every
                                            #  leaf with a leading seed axis
    RUN_DIR/models/<study>/model.json       # what it is: study, config_index, config (every
                                            #  hyperparameter and the data settings), seeds,
                                            #  val_accuracy and test_accuracy per seed (the
                                            #  record's float32 values), selected_by

``model.json`` is written last and holds the SHA-256 of ``params.msgpack``
(``params_sha256``), so a pair torn by a kill between the two writes, or a damaged
parameter file, is refused by ``read_model`` rather than served with the wrong numbers.
``load_model`` (``flaxmnist.load_model``) turns the pair into a callable ``Model``;
``flaxmnist.run.evaluation`` evaluates it again as training did, and
``python -m flaxmnist.evaluate`` checks it against its record.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from flaxmnist.core.models import MLP
from flaxmnist.errors import RunDirError, first_line
from flaxmnist.run.rundir import write_bytes_atomic, write_json_atomic
from flaxmnist.specs.config import COMPUTE_DTYPES

#: The folder of a run directory that holds the saved models, one subfolder per study.
MODELS = "models"
PARAMS_FILE = "params.msgpack"
INFO_FILE = "model.json"
#: The keys every ``model.json`` has (``params_sha256`` is checkpoint's own, not the info's).
INFO_KEYS = (
    "study",
    "config_index",
    "config",
    "seeds",
    "val_accuracy",
    "test_accuracy",
    "selected_by",
)
_CHECKSUM = "params_sha256"
_NO_MODEL = (
    "holds no saved model: it was written by an older flaxmnist, or the run did not finish a call"
)


def save_tree(path: Path, tree: Any) -> None:
    """Write the pytree of arrays ``tree`` to ``path`` as msgpack, atomically.

    Raises:
      RunDirError: ``path`` cannot be written (disk full, read-only...); it is unchanged.
    """
    write_bytes_atomic(Path(path), _tree_bytes(tree))


def _tree_bytes(tree: Any) -> bytes:
    state = jax.tree.map(np.asarray, serialization.to_state_dict(tree))
    return serialization.msgpack_serialize(state)


def load_tree(path: Path, target: Any = None) -> Any:
    """The pytree ``save_tree`` wrote to ``path``: in ``target``'s structure (NamedTuples,
    dicts; its leaves give the shapes, which must match), or as nested dicts of numpy
    arrays when ``target`` is ``None``.

    Raises:
      RunDirError: ``path`` is missing, unreadable, damaged, or holds another structure.
    """
    path = Path(path)
    data = _read_bytes(path)
    try:
        if target is None:
            return serialization.msgpack_restore(data)
        tree = serialization.from_bytes(target, data)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as err:
        detail = first_line(err, 160)
        raise RunDirError(f"{path}: damaged or not a flaxmnist checkpoint ({detail})") from None
    _check_shapes(path, target, tree)
    return tree


def _check_shapes(path: Path, target: Any, tree: Any) -> None:
    for (where, want), got in zip(
        jax.tree_util.tree_leaves_with_path(target), jax.tree.leaves(tree), strict=True
    ):
        if np.shape(want) != np.shape(got):
            raise RunDirError(
                f"{path}: {jax.tree_util.keystr(where)} has shape {np.shape(got)}, "
                f"expected {np.shape(want)}: a checkpoint of another model"
            )


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise RunDirError(f"{path}: no such file") from None
    except OSError as err:
        raise RunDirError(f"{path}: cannot read it ({err.strerror or err})") from None


def save_model(out: Path, study: str, params: Any, info: dict[str, Any]) -> Path:
    """Keep ``params`` (a Flax params dict, a leading seed axis on every leaf) and ``info``
    (``INFO_KEYS``, JSON-ready) as the best model of ``study`` in run directory ``out``:
    ``out/models/<study>/params.msgpack``, then ``model.json`` with the parameters'
    SHA-256, each atomically. Returns the folder.

    Raises:
      RunDirError: it cannot be written; what was saved before is unchanged.
    """
    folder = Path(out) / MODELS / study
    data = _tree_bytes(jax.tree.map(lambda leaf: np.asarray(leaf, np.float32), params))
    write_bytes_atomic(folder / PARAMS_FILE, data)
    checksum = hashlib.sha256(data).hexdigest()
    write_json_atomic(folder / INFO_FILE, {**info, _CHECKSUM: checksum})
    return folder


def saved_studies(out: Path) -> list[str]:
    """The studies with a saved model in run directory ``out``, sorted."""
    models = Path(out) / MODELS
    if not models.is_dir():
        return []
    return sorted(p.name for p in models.iterdir() if (p / INFO_FILE).is_file())


def read_model(
    out: Path, study: str | None = None, params: bool = True
) -> tuple[dict[str, Any], Any]:
    """``(info, params)`` of the model of ``study`` saved in run directory ``out`` (``None``:
    the only study with one); ``params`` as nested dicts of numpy arrays, or ``None`` when
    ``params`` is false (``model.json`` alone is read: ``params.msgpack`` may be missing).

    Raises:
      RunDirError: ``out`` holds no saved model, none of ``study`` (the message lists
        those it holds), several and no ``study`` named, or its files are damaged.
    """
    out = Path(out)
    if not out.is_dir():
        raise RunDirError("not a directory", parameter="run_dir", value=out)
    studies = saved_studies(out)
    if not studies:
        raise RunDirError(_NO_MODEL, parameter="run_dir", value=out)
    if study is None:
        if len(studies) > 1:
            raise RunDirError(
                f"holds the models of several studies ({', '.join(studies)}): name one "
                "(study=, or --study)",
                parameter="run_dir",
                value=out,
            )
        (study,) = studies
    elif study not in studies:
        raise RunDirError(
            f"no saved model of this study in {out} (saved: {', '.join(studies)})",
            parameter="study",
            value=study,
        )
    folder = out / MODELS / study
    info = _read_info(folder / INFO_FILE)
    checksum = info.pop(_CHECKSUM)
    if not params:
        return info, None
    data = _read_bytes(folder / PARAMS_FILE)
    if hashlib.sha256(data).hexdigest() != checksum:
        raise RunDirError(
            f"{folder / PARAMS_FILE}: does not match {INFO_FILE} (damaged, or a save was cut "
            "short): the next finished call of the run saves the model again"
        )
    tree = load_tree(folder / PARAMS_FILE)
    if not isinstance(tree, dict) or "params" not in tree:
        raise RunDirError(f"{folder / PARAMS_FILE}: not a Flax params dict (no 'params')")
    return info, tree


def _read_info(path: Path) -> dict[str, Any]:
    try:
        info = json.loads(_read_bytes(path).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunDirError(f"{path}: damaged, not JSON ({err})") from None
    missing = [k for k in (*INFO_KEYS, _CHECKSUM) if not isinstance(info, dict) or k not in info]
    if missing:
        raise RunDirError(f"{path}: not a flaxmnist model (no {', '.join(missing)})")
    seeds = info["seeds"]
    per_seed = [info[key] for key in ("val_accuracy", "test_accuracy")]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise RunDirError(f"{path}: seeds = {seeds!r}: expected a list of integers")
    if not all(isinstance(v, list) and len(v) == len(seeds) for v in per_seed):
        raise RunDirError(f"{path}: val_accuracy and test_accuracy need one value per seed")
    return info


@dataclass(frozen=True, eq=False)
class Model:
    """A saved model: its parameters for every seed, and what it is.

    Call it with images, uint8 ``(n, 28, 28)`` or ``(n, 784)`` as the dataset holds them
    (floats are taken as already scaled to [0, 1]), for logits ``(seeds, n, 10)``;
    ``predict`` gives the labels ``(seeds, n)``.

    Attributes:
      info: ``model.json``: ``study``, ``config_index``, ``config``, ``seeds``,
        ``val_accuracy``, ``test_accuracy`` (per seed, as recorded), ``selected_by``, and,
        with several seeds, ``ensemble`` (their ensemble's ``val_accuracy`` and
        ``test_accuracy``).
      params: the Flax params dict, a leading seed axis on every leaf (device arrays);
        ``None`` when loaded with ``load_model(..., params=False)``: the configuration
        alone, which a refit trains from, and nothing to call.
      module: the ``flaxmnist.core.models.MLP`` the parameters belong to.
    """

    info: dict[str, Any]
    params: Any = field(repr=False)
    module: MLP
    _apply: Callable = field(repr=False)

    @property
    def config(self) -> dict[str, Any]:
        """Every hyperparameter, and the data settings (``dataset``, ``train_size``...)."""
        return self.info["config"]

    @property
    def seeds(self) -> list[int]:
        """The seeds of the leading axis of ``params``."""
        return list(self.info["seeds"])

    def require_params(self) -> Any:
        """``params``; a ``ValueError`` if the model was loaded without them."""
        if self.params is None:
            raise ValueError(
                f"the model of study {self.info['study']} was loaded without its parameters "
                "(load_model(..., params=False)): it holds its configuration only"
            )
        return self.params

    def __call__(self, images) -> np.ndarray:
        """Logits ``(seeds, n, 10)`` for ``images`` ``(n, 28, 28)`` or ``(n, 784)``."""
        return np.asarray(self._apply(self.require_params(), jnp.asarray(images)))

    def probabilities(self, images) -> np.ndarray:
        """Softmax probabilities ``(seeds, n, 10)``."""
        logits = self._apply(self.require_params(), jnp.asarray(images))
        return np.asarray(jax.nn.softmax(logits))

    def predict(self, images, ensemble: bool = False) -> np.ndarray:
        """The predicted labels ``(seeds, n)``; with ``ensemble``, the ensemble of the seeds'
        labels ``(n,)``: the argmax of their mean softmax probabilities.

        Raises:
          ValueError: ``ensemble`` for a model of one seed (no ensemble to make).
        """
        if not ensemble:
            return self(images).argmax(axis=-1)
        if len(self.seeds) < 2:
            raise ValueError(
                f"an ensemble needs 2 or more seeds; this model has one (seed {self.seeds[0]})"
            )
        return self.probabilities(images).astype(np.float64).mean(axis=0).argmax(axis=-1)


def load_model(run_dir: str | Path, study: str | None = None, params: bool = True) -> Model:
    """The best model of ``study`` that the run in ``run_dir`` kept (``None``: the only study
    with one), ready to call on images. With ``params`` false, what ``model.json`` says
    alone (configuration, seeds, data settings, the record's accuracies), its ``params``
    ``None``: for a run directory kept without its ``params.msgpack`` (a refit needs only
    the configuration).

    Raises:
      RunDirError: ``run_dir`` holds no saved model (written by an older flaxmnist, or no
        call finished), none of ``study``, or damaged or mismatched files (missing
        parameters, unless ``params`` is false).

    Example::

        >>> import flaxmnist
        >>> flaxmnist.load_model("/nonexistent")
        Traceback (most recent call last):
        flaxmnist.errors.RunDirError: run_dir='/nonexistent': not a directory
    """
    info, tree = read_model(Path(run_dir), study, params)
    where = Path(run_dir) / MODELS / info["study"] / INFO_FILE
    config = info["config"]
    hidden, dtype = config.get("hidden"), config.get("dtype", "float32")
    if not isinstance(hidden, list) or not all(isinstance(w, int) and w > 0 for w in hidden):
        raise RunDirError(f"{where}: config.hidden = {hidden!r}: expected a list of widths")
    if dtype not in COMPUTE_DTYPES:
        raise RunDirError(f"{where}: config.dtype = {dtype!r}: expected one of {COMPUTE_DTYPES}")
    module = MLP(hidden=tuple(hidden), compute_dtype=dtype)
    apply = jax.jit(jax.vmap(module.apply, in_axes=(0, None)))
    if tree is None:
        return Model(info, None, module, apply)
    _check_params(where.with_name(PARAMS_FILE), module, tree, len(info["seeds"]))
    return Model(info, jax.tree.map(jnp.asarray, tree), module, apply)


def _check_params(path: Path, module: MLP, params: Any, seeds: int) -> None:
    """Refuse parameters that do not fit ``module`` with a leading axis of ``seeds``."""
    shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 784), jnp.uint8))
    want = jax.tree.map(lambda s: (seeds, *s.shape), shapes)
    got = jax.tree.map(np.shape, params)
    if want != got:
        raise RunDirError(
            f"{path}: parameter shapes {got} do not fit model.json's config and seeds "
            f"(hidden {list(module.hidden)}, {seeds} seeds)"
        )
