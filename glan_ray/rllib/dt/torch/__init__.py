"""Torch learner and RL module of the Decision Transformer."""
