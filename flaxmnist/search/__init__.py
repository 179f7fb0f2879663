"""Search: the strategies, configurations proposed, not listed. Nothing here imports JAX.

- ``base``: ``Strategy``, what a strategy says of itself and its two decisions, ``first``
  and ``next`` (a ``run.steps.Standing`` in, a ``run.steps.Step`` out).
- ``listed``: the grid, random and quasi-random draws (trained as planned calls);
  ``halving``: successive halving; ``pbt``: population-based training; ``learned``:
  Optuna's samplers (TPE, GP, CMA-ES, NSGA-II) proposing whole rounds of lanes.
- ``registry``: every strategy by name, the only place that names them.
- ``sampler``: the Optuna study behind a learned search; ``trials``: a configuration's
  records as an Optuna trial; ``optuna_db``: every run's ``optuna.db``.
"""
