"""Running a study, and the run directory it leaves.

- ``plan``: configurations grouped into programs and split into calls of lanes.
- ``programs``: the training functions vmapped over a grid, compiled once per shape;
  ``grid``: ``LaneGrid``, a call's lanes trained epoch by epoch, reshaped between epochs.
- ``progress``: the hooks a sweep calls while it runs, and what it cost.
- ``rundir``, ``records``, ``attempt``, ``checkpoint``: the run directory (manifest,
  ``results.jsonl``, attempts, saved parameters and the best model, ``load_model``).
- ``ensemble``: seed ensembles and greedy ensembles of configurations.
- ``loop``: ``SweepLoop``, the calls run in order, written as they finish, resumed.
"""
