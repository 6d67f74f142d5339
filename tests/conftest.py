import os

import pytest


@pytest.fixture(autouse=True)
def _run_in_tmp_path(tmp_path, monkeypatch):
    """Run every test in its own folder: MuJoCo writes MUJOCO_LOG.TXT and SB3 its logs there."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SB3_LOGDIR", str(tmp_path / "sb3_logs"))
    os.makedirs(tmp_path / "sb3_logs", exist_ok=True)
