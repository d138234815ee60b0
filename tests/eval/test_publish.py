"""publish_evaluation: an A/B result and its report written into a run directory, local or URI.

The plots are report.py's business (and take seconds of matplotlib); here a stand-in writes one
figure, so what is checked is where publish puts every file, not how the figures look."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from glan_ray.eval import report
from glan_ray.eval.publish import AB_JSON, publish_evaluation
from tests.eval.test_ab import _hand_made

ARMS = ("logging", "always_explore", "oracle")


@pytest.fixture(autouse=True)
def quick_plots(monkeypatch):
    def plot(summary: dict, out: str) -> list[str]:
        with open(os.path.join(out, "metric_bars.png"), "w") as f:
            f.write(",".join(summary["metrics"]))
        return ["metric_bars.png"]

    monkeypatch.setattr(report, "plot", plot)


def test_publish_writes_the_result_and_its_report(tmp_path):
    run = str(tmp_path / "run")
    result = _hand_made(ARMS)
    path, markdown = publish_evaluation(run, result)
    assert path == os.path.join(run, "report.md")
    with open(path) as f:
        assert f.read() == markdown
    for arm in ARMS:
        assert f"| {arm} |" in markdown
    assert "metric_bars.png" in markdown
    with open(os.path.join(run, AB_JSON)) as f:
        saved = json.load(f)
    assert saved["config"]["arms"] == list(ARMS)
    assert saved["metrics"]["oracle"]["usage_time"] == pytest.approx(140.0)
    units = np.load(os.path.join(run, "ab", "ab_units.npz"))
    np.testing.assert_array_equal(units["oracle/usage"], result.units["oracle"]["usage"])
    for name in ("ab_metrics.csv", "metric_bars.png"):
        assert os.path.exists(os.path.join(run, name)), name


def test_publish_without_a_result_rerenders_the_saved_one(tmp_path):
    run = str(tmp_path / "run")
    _, first = publish_evaluation(run, _hand_made(ARMS))
    os.remove(os.path.join(run, "report.md"))
    path, again = publish_evaluation(run)
    assert again == first and os.path.exists(path)


def test_publish_without_results_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no A/B results at .*ab[/\\]ab\.json"):
        publish_evaluation(str(tmp_path / "empty"))
    assert not os.path.exists(tmp_path / "empty")  # nothing is created


def test_publish_to_a_uri_stages_locally_and_uploads(tmp_path):
    remote = tmp_path / "remote"
    run = f"file://{remote}"
    path, markdown = publish_evaluation(run, _hand_made(ARMS))
    assert path == f"{run}/report.md"
    assert (remote / "report.md").read_text() == markdown
    for name in ("ab/ab.json", "ab/ab_units.npz", "ab_metrics.csv", "metric_bars.png"):
        assert (remote / name).exists(), name
    # re-rendering fetches ab.json from the URI into a fresh staging directory
    (remote / "report.md").unlink()
    assert publish_evaluation(run)[1] == markdown
    assert (remote / "report.md").read_text() == markdown
    with pytest.raises(FileNotFoundError, match="no A/B results at file://"):
        publish_evaluation(f"file://{tmp_path}/nothing")
