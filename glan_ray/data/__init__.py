"""Datasets on Ray Data: building Arrow tables from the simulator, writing and reading Parquet."""
