"""bench.gpu runs everywhere: without a GPU it checks every path at tiny sizes on the CPU and says
clearly that no GPU was found, so the command a GPU session will run cannot rot."""

import pytest
import torch


@pytest.mark.slow
def test_the_gpu_check_runs_at_tiny_sizes_without_a_gpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: run python -m bench.gpu itself")
    from bench.gpu import main

    out = main(["--out", str(tmp_path / "GPU.md"), "--repeats", "1"])
    text = out.read_text()
    assert "**No GPU was found**" in text
    for section in ("LoRA rank 8 preference steps", "Full SD1.5 fine-tune", "DDIM sampling",
                    "memory_estimate's prediction", "The app on the SD backend"):
        assert section in text
    assert "| sd15 | bfloat16 | 8x8 | 1 |" in text and "| sdxl | bfloat16 | 16x16 | 2 |" in text
    assert "compare_s" in text and "python -m bench.gpu --out" in text
