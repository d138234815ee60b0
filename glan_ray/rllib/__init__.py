"""Custom RLlib offline algorithms (new API stack): the only package that imports ``ray.rllib``.

- ``cql/``: KLAN-IIT, discrete CQL with a dynamic conservative coefficient α(s).
- ``dt/``: GLAN's Decision Transformer learner over user-day trajectories.

Both train purely offline from the simulator's Parquet datasets through RLlib's offline data
path (Ray Data + a custom ``OfflinePreLearner``), with no environment. The networks are the plain
``nn.Module``s of ``glan_ray.models``, so Serve and evaluation load them without RLlib.
Import the algorithm modules directly (nothing is imported here, so ``import glan_ray`` stays
free of RLlib).
"""
