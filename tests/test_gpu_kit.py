"""training/gpu/run.sh refuses what it cannot use before it spends device time: the last call of a
GPU run must find every part an earlier call left, or say plainly that the machine went cold."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def kit(tmp_path: Path) -> Path:
    """A copy of the scripts in a tree of its own: run.sh works in the tree it sits in."""
    shutil.copytree(ROOT / "training/gpu", tmp_path / "training/gpu")
    (tmp_path / "out").mkdir()
    return tmp_path


def run(tree: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(tree / "training/gpu/run.sh"), *args], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "OUT": str(tree / "out")}, timeout=60)


def test_usage_errors_exit_2(tmp_path):
    tree = kit(tmp_path)
    assert run(tree).returncode == 2 and "usage: run.sh receive | run.sh train CONFIG" in run(tree).stderr
    done = run(tree, "train")
    assert done.returncode == 2 and "name at least one training config" in done.stderr


def test_an_earlier_call_reports_its_part(tmp_path):
    tree = kit(tmp_path)
    (tree / ".gpu/1").mkdir(parents=True)
    (tree / ".gpu/1/part-0").write_bytes(b"first half")
    done = run(tree, "receive")
    assert done.returncode == 0 and ".gpu/1/part-0" in done.stdout


def test_a_part_lost_between_calls_stops_the_run_with_the_reason(tmp_path):
    tree = kit(tmp_path)
    payload = b"first half" + b"second half"
    (tree / ".gpu/2").mkdir(parents=True)
    (tree / ".gpu/2/part-1").write_bytes(b"second half")  # part 1 went with a machine that went cold
    (tree / ".gpu/2/payload.sha256").write_text(f"{hashlib.sha256(payload).hexdigest()}  payload.tar.xz\n")
    done = run(tree, "train", "training/configs/homedepot.yaml")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "an earlier part is missing (the machine went cold between calls)" in done.stdout  # run.sh tees all output
    assert "joining 1 parts" in (tree / "out/log.txt").read_text()  # the log comes back with the files


def test_fit_scales_every_pass_to_the_seconds_left(tmp_path):
    """fit.py: the passes' rows shrink by one factor to what the measured rows/s allow in the time
    left, never grow, and stay at least a batch (or the pass as written when it is smaller); the copy sits beside the config, where its relative
    paths still hold; without a speed the config is kept as it is."""
    import yaml

    config = tmp_path / "configs/gpu.yaml"
    config.parent.mkdir()
    config.write_text(yaml.safe_dump({"run_dir": "../runs/x", "sft": {
        "epochs": 1, "batch_size": 32, "rows_per_class": 15000,
        "more_passes": [{"rows_per_class": 15000, "learning_rate": 1e-4}, {"rows_per_class": 10, "learning_rate": 1e-4}]}}))
    speed = tmp_path / "speed.json"
    speed.write_text('{"results": [{"rows_per_s": 400.0}]}')

    def fitted(seconds: str, speed_file: Path = speed) -> dict:
        done = subprocess.run(["python3", str(ROOT / "training/gpu/fit.py"), str(config), str(speed_file), seconds],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert Path(done.stdout.strip()) == config.with_name("gpu.fit.yaml")
        sft = yaml.safe_load(Path(done.stdout.strip()).read_text())["sft"]
        return [sft["rows_per_class"]] + [p["rows_per_class"] for p in sft["more_passes"]]

    assert fitted("120.5") == [6022, 6022, 10]  # 48,200 rows of the 120,040 planned: x 0.4015
    assert fitted("100000") == [15000, 15000, 10]  # time to spare: the plan as written
    assert fitted("120", tmp_path / "no-speed.json") == [15000, 15000, 10]
    assert fitted("120.5", Path("400")) == [6022, 6022, 10]  # a rate given as a number
    raw = yaml.safe_load(config.read_text())
    raw["sft"]["more_passes"][0]["stop_after_steps"] = 100  # 3,200 of its 60,000 rows
    config.write_text(yaml.safe_dump(raw))
    assert fitted("120.5") == [11432, 11432, 10]  # 48,200 of 63,240 planned rows: x 0.7622
