"""Running a study, and the run directory it leaves.

- ``plan``: the run's ``Plan``, made once: each configuration's ``TrainSpec``, programs
  (groups) and calls of lanes, the budget's cut.
- ``programs``: the training functions vmapped over a grid, compiled once per shape;
  ``grid``: ``LaneGrid``, a call's lanes trained epoch by epoch, reshaped between epochs.
- ``progress``: the hooks a sweep calls while it runs, and what it cost.
- ``rundir``, ``records``, ``attempt``, ``checkpoint``: the run directory (manifest,
  ``results.jsonl``, attempts, saved parameters and the best model, ``load_model``).
- ``ensemble``: seed ensembles and greedy ensembles of configurations; ``evaluation``:
  the kept model evaluated again, and what a refit trains.
- ``steps``: what a strategy is told and answers; ``stepped``: a study whose strategy
  decides as it trains, its steps as lane grids; ``search_state``: its checkpoint.
- ``keeper``: ``Keeper``, every record and what is kept with it; ``loop``: ``SweepLoop``,
  the plan's calls in order, then the stepped studies, written as they finish, resumed.
"""
