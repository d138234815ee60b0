"""Torch learner and RL module of discrete CQL."""
