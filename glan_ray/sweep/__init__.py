"""The world sweep (``glan-ray sweep-worlds``): which method wins in which simulated world.

``cell``: one world's training, λ tuning and A/B; ``run``: the grid as Ray Tune trials;
``world_map``: the phase diagram, the rank correlations and the reports."""
