import numpy as np
import pandas as pd
import pytest

from analysis.evaluate import evaluate_models, summarise
from analysis.stats import bootstrap_ci, win_rate
from dde.testing import tiny_toy_model
from dde.toy.report import judge_scenes
from dde.toy.world import split_scenes


def test_bootstrap_ci_brackets_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small, large = rng.normal(1.0, 1.0, 50), rng.normal(1.0, 1.0, 5000)
    lo, hi = bootstrap_ci(small)
    assert lo < small.mean() < hi
    lo2, hi2 = bootstrap_ci(large)
    assert hi2 - lo2 < (hi - lo) / 5
    # normal theory: the 95% half-width is about 1.96 sigma / sqrt(n)
    assert (hi2 - lo2) / 2 == pytest.approx(1.96 / np.sqrt(5000), rel=0.15)
    assert np.isnan(bootstrap_ci([1.0])[0])


def _matrix(rng, prompts, seeds, sd_seed, sd_prompt, sd_noise, mean=0.0, prompt_effect=None):
    effect = rng.normal(0, sd_prompt, prompts) if prompt_effect is None else prompt_effect
    values = mean + effect[:, None] + rng.normal(0, sd_seed, seeds)[None, :] + rng.normal(0, sd_noise, (prompts, seeds))
    return pd.DataFrame(values, index=[f"p{i}" for i in range(prompts)]), effect


def test_seed_bootstrap_has_the_known_width_and_coverage():
    """prompts x training seeds with a seed effect, a prompt effect and noise: the mean's variance is
    sd_seed^2 / S + sd_prompt^2 / P + sd_noise^2 / (P S). The interval's half-width is 1.96 times
    that standard error (up to the bootstrap's (S-1)/S shrinkage of the seed term), and resampling
    prompts alone (the first study's mistake) would be far too narrow."""
    from analysis.stats import seed_bootstrap

    rng = np.random.default_rng(0)
    P, S, sd_seed, sd_prompt, sd_noise = 200, 8, 0.05, 0.1, 0.05  # noqa: N806
    m, _ = _matrix(rng, P, S, sd_seed, sd_prompt, sd_noise)
    lo, hi = seed_bootstrap(m, n=4000)
    se = np.sqrt(sd_seed**2 * (S - 1) / S / S + sd_prompt**2 / P + sd_noise**2 / (P * S))
    assert (hi - lo) / 2 == pytest.approx(1.96 * se, rel=0.25)
    prompts_only = bootstrap_ci(m.mean(axis=1).to_numpy())
    assert (prompts_only[1] - prompts_only[0]) < 0.6 * (hi - lo)
    # coverage over repeated studies, and a paired difference to a one-column baseline
    covered = 0
    for k in range(60):
        r = np.random.default_rng(100 + k)
        a, effect = _matrix(r, 60, 5, sd_seed, sd_prompt, sd_noise, mean=0.1)
        b, _ = _matrix(r, 60, 1, 0.0, sd_prompt, sd_noise, prompt_effect=effect)
        lo, hi = seed_bootstrap(a, b, n=1000, seed=k)
        covered += lo <= 0.1 <= hi
    assert covered >= 48  # about 95% of 60, allowing for the bootstrap's small-S narrowness
    with pytest.raises(ValueError, match="same prompts"):
        seed_bootstrap(a, b.iloc[::-1])


def test_win_rate():
    assert win_rate([1, 2, 3], [1, 1, 5]).tolist() == [0.5, 1.0, 0.0]
    with pytest.raises(ValueError, match="one shape"):
        win_rate([1, 2], [1])


def test_summarise_pairs_by_prompt_and_seed():
    table = pd.DataFrame({
        "model": ["base"] * 4 + ["tuned"] * 4,
        "prompt": ["a", "b", "a", "b"] * 2, "seed": [0, 1, 2, 3] * 2,
        "score": [0.5, 0.5, 0.5, 0.5, 0.6, 0.4, 0.7, 0.5],
        **{f"ok_{a}": [True] * 8 for a in ("shape", "colour", "size", "position", "background")},
    })
    summary = summarise(table, "base").set_index("model")
    assert summary.loc["tuned", "win_rate"] == pytest.approx((1 + 0 + 1 + 0.5) / 4)
    assert summary.loc["tuned", "score"] == pytest.approx(0.55)
    assert np.isnan(summary.loc["base"].get("win_rate", np.nan))


def test_evaluate_models_is_paired_and_deterministic(tmp_path):
    from dde.backends.toy import ToyBackend

    backend = ToyBackend.load(tiny_toy_model(tmp_path / "m"))
    prompts = [s.caption for s in split_scenes()[1][:3]]
    table = evaluate_models({"base": backend, "same": backend}, prompts, seeds=2, steps=2, batch=4)
    assert len(table) == 12
    base, same = table[table.model == "base"], table[table.model == "same"]
    assert base.score.tolist() == same.score.tolist()  # same model, same seeds -> same images
    summary = summarise(table, "base").set_index("model")
    assert summary.loc["same", "win_rate"] == 0.5
    report = judge_scenes(backend, split_scenes()[1][:3], seeds=2, steps=2, batch=4)
    assert report["n"] == 6 and report["total"] == pytest.approx(base.score.mean())
