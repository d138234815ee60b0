"""Write an A/B result and its report into a run directory, local or a URI (``s3://``...).

``ABResult.save`` and ``write_report`` write local files (numpy, matplotlib); for a URI run they
work in a local staging directory that is uploaded when both succeeded (``glan_ray.storage``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from glan_ray import storage

if TYPE_CHECKING:
    from glan_ray.eval.ab import ABResult

AB_JSON = os.path.join("ab", "ab.json")
"""Where the A/B summary lives, relative to the run directory."""
DIAGNOSIS_JSON = os.path.join("diagnosis", "diagnosis.json")
"""The run's premise diagnosis (the ``diagnose`` stage), which the report opens with."""


def publish_evaluation(run: str, result: ABResult | None = None) -> tuple[str, str]:
    """Save ``result`` under ``<run>/ab/`` (None: reuse the saved ``ab.json``), then write
    ``report.md``, ``ab_metrics.csv`` and the plots into ``run``.

    Returns (path of ``report.md`` under ``run``, its markdown).
    """
    if result is None and not storage.exists(storage.join(run, "ab", "ab.json")):
        raise FileNotFoundError(f"no A/B results at {storage.join(run, 'ab', 'ab.json')}")
    from glan_ray.eval.report import write_report

    fetch = (DIAGNOSIS_JSON,) if result is not None else (AB_JSON, DIAGNOSIS_JSON)
    with storage.staged_dir(run, fetch=fetch) as local:
        if result is not None:
            result.save(os.path.join(local, "ab"))
        with open(write_report(local)) as f:
            markdown = f.read()
    return storage.join(run, "report.md"), markdown


__all__ = ["publish_evaluation"]
