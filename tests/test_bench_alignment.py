"""The alignment study end to end at a toy size: tune, train, evaluate, report."""

import pandas as pd
import pytest


@pytest.mark.slow
def test_the_study_writes_its_report(tmp_path):
    from bench.alignment import main

    results = main(["--variants", "dpo", "dde", "--seeds", "2", "--steps", "2", "--prompts", "3",
                    "--tune-prompts", "2", "--tune-grid", "500:3e-4", "1000:3e-4", "--curve-every", "1",
                    "--curve-prompts", "2", "--workers", "1", "--no-png", "--runs", str(tmp_path / "runs"),
                    "--out", str(tmp_path / "out")])
    text = results.read_text()
    assert results == tmp_path / "RESULTS.md"
    assert "python -m bench.alignment --variants dpo dde" in text
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert summary.variant.tolist() == ["base", "dpo", "dde"]
    assert (summary.n.tolist()) == [3, 6, 6]  # 3 prompts x 1 base; 3 prompts x 2 training seeds
    assert summary.win_rate.iloc[1:].between(0, 1).all()
    curve = pd.read_csv(tmp_path / "out" / "curve.csv")
    assert sorted(curve.step.unique()) == [0, 1, 2]
    assert len(pd.read_csv(tmp_path / "out" / "tuning.csv")) == 2
    assert "| dde |" in text and "## Learning curves" in text
    # the report can be rewritten from the saved outputs alone
    (tmp_path / "out" / "discussion.md").write_text("Hand-written reading.")
    main(["--report-only", "--no-png", "--out", str(tmp_path / "out")])
    assert "Hand-written reading." in results.read_text()
