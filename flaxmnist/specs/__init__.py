"""Specs: what a sweep trains, as data, checked before anything runs.

- ``keys`` (``keys.toml``): every key of a spec, once, with its checks, its default, and
  how training takes it (a lane array or static).
- ``config``: ``Config`` (one configuration, its fields from the table), ``Study``, the
  checks of a value, grid specs (``[grid]``, ``[[configs]]``).
- ``space``: search specs (``strategy``, ``[search]`` priors, the settings tables), read
  with what the strategy says of itself.
- ``objectives``: what a learned search optimises.

Loading a study by name or path (``flaxmnist.studies``) sits above the strategies, which
say what their specs may hold. Nothing here imports JAX.
"""
