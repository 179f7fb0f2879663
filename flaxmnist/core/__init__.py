"""Training's pure core: data in, parameters and a history out, nothing written.

- ``data``: MNIST as uint8 arrays, the holdout split, minibatch order; ``sources``: other
  MNIST-like datasets (IDX folders, TensorFlow Datasets).
- ``models``: the MLP (Flax linen), output-major kernels, padded widths.
- ``augment``: shifts, rotations, scalings and elastic deformations of a minibatch, on the
  device.
- ``losses``: cross-entropy (exact, Keras 1's clipped, label-smoothed), L2, schedules.
- ``optimizer``: Adam as Keras 1 had it (optax's, its hyperparameters in its state with
  :func:`optax.inject_hyperparams` so that each lane has its own), coupled L2 and decoupled
  weight decay, the parameters' moving average (:func:`optax.ema`).
- ``mup``: the maximal-update parameterisation for Adam (initial scales and a step per
  layer, relative to a base width), beside the notebook's standard one.
- ``train``: ``make_train(spec)`` returns a pure ``train(hparams, key, data)``, nested
  ``lax.scan`` over epochs and steps, vmappable over every hyperparameter and seed.

Nothing here knows of specs' files, run directories or devices.
"""
