"""Devices and many hosts: where the lanes run.

- ``machine``: memory budgets and what a run records of its machine.
- ``host``: CPU devices (``--cpu-devices``), set before JAX starts.
- ``placement``: the lane mesh (``jax.sharding``), lanes split over devices and gathered.
- ``cluster``: many hosts (``jax.distributed``): one process per host, lost processes named.
- ``compile_cache``: JAX's persistent compilation cache.
"""
