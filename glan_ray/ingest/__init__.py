"""``glan-ray ingest``: an app's raw page-visit events → its datasets, with Ray Data
(docs/ingest.md). ``ingest(spec, events, out)`` is the entry point."""

from __future__ import annotations

from glan_ray.ingest.events import OPTIONAL, REQUIRED, BadEventsError
from glan_ray.ingest.run import IngestResult, ingest

__all__ = ["OPTIONAL", "REQUIRED", "BadEventsError", "IngestResult", "ingest"]
