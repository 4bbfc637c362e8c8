"""Issue 13 item 7: long jobs are not silent off a terminal (probes 4, 15: phase lines only on a TTY; a
2-epoch ALSTM fit printed nothing for 222 s and warned twice about the GPU)."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings

import pytest
import torch

from qexp_models.alstm import ALSTM
from tests.models.conftest import FRAME_SEGMENTS, FrameDataset, random_frame

from .conftest import workflow_config, write_config

TINY = {"hidden_size": 8, "num_layers": 1, "batch_size": 1024, "seed": 0}


def test_phase_lines_reach_a_pipe_and_can_be_silenced():
    code = "from qexp.progress import phase\nwith phase('fit Model'):\n    pass\n"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stderr.splitlines() == ["fit Model ...", "fit Model: done in 0.0 s"], p.stderr
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "QEXP_PROGRESS": "0"})
    assert p.returncode == 0 and p.stderr == ""


def test_alstm_prints_a_line_per_epoch(caplog):
    caplog.set_level(logging.INFO, logger="qexp.progress")
    ALSTM(d_feat=6, n_epochs=2, GPU=-1, **TINY).fit(FrameDataset(random_frame(), FRAME_SEGMENTS))
    lines = [r.getMessage() for r in caplog.records if r.name == "qexp.progress"]
    epochs = [line for line in lines if line.startswith("ALSTM epoch")]
    assert [e.split(":")[0] for e in epochs] == ["ALSTM epoch 1/2", "ALSTM epoch 2/2"]
    assert all("train loss" in e and "valid loss" in e and e.endswith(" s") for e in epochs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback when CUDA is missing")
def test_gpu_without_cuda_warns_once_per_model():
    ds = FrameDataset(random_frame(), FRAME_SEGMENTS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = ALSTM(d_feat=6, n_epochs=1, GPU=0, **TINY).fit(ds)
        model.predict(ds)
    gpu = [w for w in caught if "GPU=0 was requested" in str(w.message)]
    assert len(gpu) == 1


def test_a_piped_qexp_run_shows_its_phases(tiny_market, tmp_path):
    cfg = write_config(tmp_path / "wf.yaml", workflow_config(tiny_market))
    qexp = os.path.join(os.path.dirname(sys.executable), "qexp")
    p = subprocess.run([qexp, "run", str(cfg), "--uri", str(tmp_path / "runs")], capture_output=True, text=True,
                       timeout=300, env={**os.environ, "QEXP_LOG_LEVEL": "INFO"})
    assert p.returncode == 0, p.stderr[-2000:]
    for phase in ("dataset ...", "fit LinearModel: done in", "SigAnaRecord: done in", "PortAnaRecord: done in"):
        assert phase in p.stderr, phase
    assert "store:" in p.stdout and "run id:" in p.stdout
