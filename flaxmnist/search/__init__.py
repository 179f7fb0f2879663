"""Search: configurations proposed, not listed.

- ``strategies``: random, quasi-random, successive halving and population-based training.
- ``learned``: Optuna's samplers (TPE, GP, CMA-ES, NSGA-II) proposing whole rounds of lanes.
- ``sampler``: the Optuna study behind a learned search; ``trials``: a configuration's
  records as an Optuna trial; ``optuna_db``: every run's ``optuna.db``.
- ``state``: a search's state on disk, so a killed search resumes where it was.
"""
