"""KLAN-IIT: discrete CQL with a dynamic conservative coefficient (``cql.py`` holds the config)."""
