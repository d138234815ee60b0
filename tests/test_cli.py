"""The glan-ray command line: help, a small simulate run with its summary, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from glan_ray.cli import main


def test_help_lists_commands_and_simulate_options():
    out = subprocess.run(
        [sys.executable, "-m", "glan_ray.cli", "simulate", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in ("--users", "--days", "--out", "--rct", "--seed", "--policy", "--overwrite"):
        assert flag in out
    top = subprocess.run(
        [sys.executable, "-m", "glan_ray.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "simulate" in top
    for cmd in ("train", "label-hrm", "tune", "evaluate", "pipeline", "diagnose"):
        assert cmd in top
    assert "--world" in out


def test_diagnose_refuses_bad_arguments_naming_them(tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "glan_ray.cli", "diagnose", *args],
                              capture_output=True, text=True)  # fmt: skip

    r = run("--world", "premise", "--out", str(tmp_path), "--days", "3")
    assert r.returncode == 2 and "--days must be >= 4" in r.stderr
    r = run("--world", "nowhere", "--out", str(tmp_path))
    assert r.returncode == 2 and "unknown world 'nowhere'; the worlds are: default" in r.stderr
    r = run("--world", "premise:strength=-1", "--out", str(tmp_path))
    assert r.returncode == 2 and "strength must be finite and >= 0; got -1.0" in r.stderr
    r = run("--out", str(tmp_path))
    assert r.returncode == 2 and "one of the arguments --data --world is required" in r.stderr


@pytest.mark.parametrize(
    ("cmd", "flags"),
    [
        (["train"], ["--iterations", "--updates-per-iteration", "--set", "cql", "dt",
                     "--history"]),
        (["label-hrm"], ["--data", "--hrm"]),
        (["evaluate"], ["--run", "--arms", "--seeds", "--report-only", "--aa-days", "--ab-days",
                        "--burn-in-days", "--burn-in-arm", "--buckets", "--control",
                        "--refresh-every", "--refresh-preset"]),
        (["pipeline"], ["--preset", "--out", "--from", "tiny", "demo"]),
    ],
)
def test_every_command_explains_itself(cmd, flags):
    from glan_ray.cli import build_parser

    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[cmd[0]]
    text = sub.format_help()
    for flag in flags:
        assert flag in text


def test_rl_and_pipeline_client_mistakes_exit_2(tmp_path, capsys):
    from glan_ray.cli import main

    assert main(["train", "cql", "--data", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "transitions" in capsys.readouterr().err
    code = main(["train", "dt", "--data", str(tmp_path), "--out", str(tmp_path),
                 "--set", "alpha0=1"])  # fmt: skip
    assert code == 2 and "alpha0" in capsys.readouterr().err
    assert main(["evaluate", "--run", str(tmp_path), "--report-only"]) == 2
    assert "ab.json" in capsys.readouterr().err
    # arm options are checked before any Ray work
    assert main(["evaluate", "--run", str(tmp_path), "--arm-option", "glan"]) == 2
    assert "ARM.KEY=VALUE" in capsys.readouterr().err
    bad = ["evaluate", "--run", str(tmp_path), "--arm-option", "last_exit.target_gain=2"]
    assert main(bad) == 2
    assert "'last_exit': unknown option(s) target_gain; valid: none" in capsys.readouterr().err
    bad = ["evaluate", "--run", str(tmp_path), "--arms", "logging", "--arm-option", "glan.x=1"]
    assert main(bad) == 2
    assert "glan" in capsys.readouterr().err
    # protocol sizes are checked before any Ray work, naming the flag's field
    assert main(["evaluate", "--run", str(tmp_path), "--aa-days", "-1"]) == 2
    assert "aa_days must be >= 0; got -1" in capsys.readouterr().err
    assert main(["evaluate", "--run", str(tmp_path), "--ab-days", "0"]) == 2
    assert "ab_days must be >= 1; got 0" in capsys.readouterr().err
    # a refresh's budget and data are checked before the A/B plays a day
    refresh = ["evaluate", "--run", str(tmp_path), "--refresh-every", "3", "--refresh-arms", "klan"]
    assert main([*refresh, "--refresh-updates", "0"]) == 2
    assert "updates_per_iteration must be >= 1; got 0" in capsys.readouterr().err
    assert main([*refresh, "--refresh-control"]) == 2
    assert "--refresh-control) needs base_data (--refresh-base-data)" in capsys.readouterr().err


def test_train_history_is_for_cql_and_needs_sessions_and_transitions(tmp_path, capsys):
    from glan_ray.cli import main

    args = ["--data", str(tmp_path), "--out", str(tmp_path), "--history"]
    assert main(["train", "dt", *args]) == 2
    assert "--history applies to cql only" in capsys.readouterr().err
    assert main(["train", "cql", *args]) == 2
    assert "no sessions dataset" in capsys.readouterr().err


def test_arm_options_parse_values_as_yaml():
    from glan_ray.cli import _arm_options

    got = _arm_options(["glan.target_gain=1.5", "dt.target_gain=2", "glan_no_hrm.target_gain=3"])
    assert got == {"glan": {"target_gain": 1.5}, "dt": {"target_gain": 2},
                   "glan_no_hrm": {"target_gain": 3}}  # fmt: skip


def test_external_arms_parse_and_name_the_flag(tmp_path, capsys):
    from glan_ray.cli import _external_arms

    f = tmp_path / "peer.pt2"
    f.write_bytes(b"x")
    assert _external_arms([f"peer={f}"]) == {"peer": str(f)}
    for bad, msg in ((["peer"], "expected NAME=PATH"), ([f"p={f}", f"p={f}"], "given twice"),
                     ([f"p={tmp_path}/none.pt2"], "--external p: no policy file")):  # fmt: skip
        with pytest.raises((ValueError, FileNotFoundError), match=msg):
            _external_arms(bad)
    # a clash with a built-in arm is refused before any Ray work, naming the field
    assert main(["evaluate", "--run", str(tmp_path), "--external", f"klan={f}"]) == 2
    assert "external: arm name(s) klan are built-in arms" in capsys.readouterr().err


def test_simulate_writes_datasets_and_prints_summary(ray_session, tmp_path, capsys):
    out = str(tmp_path / "run")
    code = main(["simulate", "--users", "200", "--days", "2", "--out", out, "--rct", "--seed", "5"])
    assert code == 0
    printed = capsys.readouterr().out
    for word in (
        "daily",
        "sessions",
        "trajectories",
        "transitions",
        "rct",
        "drop-off ratio",
        "sessions/user-day",
        "page assign ratios",
    ):
        assert word in printed
    assert "400" in printed  # daily rows = users x days
    for name in ("daily", "sessions", "trajectories", "transitions", "rct"):
        assert os.listdir(os.path.join(out, name))


def test_simulate_refuses_to_overwrite_and_rejects_bad_numbers(ray_session, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["simulate", "--users", "100", "--days", "1", "--out", out]) == 0
    capsys.readouterr()
    assert main(["simulate", "--users", "100", "--days", "1", "--out", out]) == 2
    assert "already holds data" in capsys.readouterr().err
    assert main(["simulate", "--users", "0", "--days", "1", "--out", out, "--overwrite"]) == 2
    assert "users must be >= 1" in capsys.readouterr().err


def test_sim_config_file_with_unknown_key_is_rejected(tmp_path, capsys):
    cfg = tmp_path / "sim.yaml"
    cfg.write_text("tau: 30\nbogus_field: 1\n")
    code = main(
        [
            "simulate",
            "--users",
            "10",
            "--days",
            "1",
            "--out",
            str(tmp_path / "o"),
            "--sim-config",
            str(cfg),
        ]
    )
    assert code == 2
    assert "bogus_field" in capsys.readouterr().err


def test_unknown_policy_is_an_argparse_error():
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--users", "10", "--days", "1", "--out", "x", "--policy", "nope"])
    assert exc.value.code == 2


def test_variants_and_incumbents_are_checked_before_any_ray_work(tmp_path, capsys):
    from glan_ray.cli import _variant_arms

    got = _variant_arms(["inc=klan@runs/x/models", "hot=glan"])
    assert got == {"inc": {"arm": "klan", "models": "runs/x/models"}, "hot": {"arm": "glan"}}
    for bad, msg in ((["inc"], "expected NAME=ARM"), (["a=klan", "a=glan"], "given twice")):
        with pytest.raises(ValueError, match=msg):
            _variant_arms(bad)
    run = ["evaluate", "--run", str(tmp_path), "--arms", "logging"]
    assert main([*run, "--variant", "klan=glan"]) == 2
    assert "variants: arm name(s) klan are built-in" in capsys.readouterr().err
    assert main([*run, "--variant", "v=nope"]) == 2
    assert "variants['v']: variant: unknown arm 'nope'" in capsys.readouterr().err
    assert main([*run, "--variant", "v=klan", "--arm-option", "v.target_gain=2"]) == 2
    assert "'klan': unknown option(s) target_gain; valid: explore" in capsys.readouterr().err
    sim = ["simulate", "--users", "10", "--days", "1", "--out", str(tmp_path / "o")]
    assert main([*sim, "--incumbent", "last_exit"]) == 2
    assert "incumbent: 'last_exit' is not a learned arm" in capsys.readouterr().err
    assert main([*sim, "--explore", "epsilon=0.1"]) == 2
    assert "--models and --explore need --incumbent ARM" in capsys.readouterr().err
    assert main([*sim, "--incumbent", "klan", "--models", str(tmp_path), "--explore", "e=1"]) == 2
    assert "unknown mode 'e'" in capsys.readouterr().err
