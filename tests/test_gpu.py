"""The GPU path: routed == dense on CUDA, bf16 training steps, torch.compile. Skipped without
CUDA (CI has none); run on a GPU machine with `python -m pytest -m gpu`."""

from __future__ import annotations

import json

import pytest
import torch

from harness.cli.main import main
from harness.core.config import resolve
from harness.engine.model import Model
from tasks import TASKS

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def _model(router: str, ops: list[str], execution: str, seq_len: int = 256):
    task = TASKS.get("listops")(seq_len, cache_dir="/nonexistent-never-loaded")
    cfg = resolve({"preset": "smoke", "routing": {"router": router, "ops": ops,
                                                  "execution": execution},
                   "model": {"d_model": 64, "heads": 4, "layers": 2}}, {})
    torch.manual_seed(0)
    return Model(cfg, task, seq_len).cuda(), task


@pytest.mark.parametrize("ops", [["dct", "attn"], ["dct", "rbf", "attn"]])
def test_routed_equals_dense_on_cuda(ops):
    from harness.probes.checks import random_batch

    routed, task = _model("entropy", ops, "routed")
    dense, _ = _model("entropy", ops, "dense")
    dense.load_state_dict(routed.state_dict())
    g = torch.Generator().manual_seed(1)
    for model in (routed, dense):  # calibrate identically, then freeze
        model.train()
    with torch.no_grad():
        for _ in range(2):
            batch = random_batch(task, 8, 256, g, padded=True).to("cuda")
            routed(batch)
            dense(batch)
    routed.eval()
    dense.eval()
    batch = random_batch(task, 8, 256, g, padded=True).to("cuda")
    out_r, _ = routed(batch)
    out_d, _ = dense(batch)
    torch.testing.assert_close(out_r, out_d, atol=1e-4, rtol=1e-4)


def test_bf16_training_steps_are_finite_and_compile_works(tmp_path, capsys):
    for extra in ([], ["--compile", "--router", "single", "--ops", "attn"]):
        code = main(["run", "--preset", "smoke", "--max-steps", "5", "--out", str(tmp_path),
                     "--cache-dir", str(tmp_path / "cache"), *extra])
        assert code == 0, capsys.readouterr().err
    for path in tmp_path.glob("*.json"):
        record = json.loads(path.read_text())
        assert record["environment"]["device"] == "cuda"
        assert all(torch.isfinite(torch.tensor(v)) for v in record["metrics"]["test"].values())
