"""GLAN's Decision Transformer on RLlib's new API stack (``dt.py`` holds the config)."""
