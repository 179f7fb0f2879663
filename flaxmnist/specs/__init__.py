"""Specs and studies: what a sweep trains, as data, checked before anything runs.

- ``config``: ``Config`` (one configuration), ``Study``, the spec keys and their checks,
  grid specs (``[grid]``, ``[[configs]]``).
- ``space``: search specs (``strategy``, ``[search]`` priors).
- ``objectives``: what a learned search optimises.
- ``studies``: the built-in studies (``sweeps/*.toml``) and specs read from files.

Nothing here imports JAX.
"""
