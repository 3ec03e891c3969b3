import pytest

from analysis import curves
from app.__main__ import parse_args
from app.main import credit_plot


def test_credit_plot_handler_returns_a_figure_and_a_summary():
    fig, table = credit_plot(["dpo", "dde-closed"], next(iter(curves.SCHEDULER_PRESETS)), 1000, False, False)
    assert [trace.name for trace in fig.data] == ["dpo", "dde-closed"]
    assert len(fig.data[1].y) == 1000
    assert "| dde-closed | 354 | 77.9% |" in table


def test_credit_plot_rejects_bad_input():
    import gradio as gr

    with pytest.raises(gr.Error, match="at least one variant"):
        credit_plot([], "linear (DDPM)", 1000, False, False)
    with pytest.raises(gr.Error, match="between 10 and 10000"):
        credit_plot(["dpo"], "linear (DDPM)", 3, False, False)


def test_defaults_bind_locally(monkeypatch):
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    args = parse_args([])
    assert (args.host, args.port, args.share) == ("127.0.0.1", 7860, False)
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7999")
    assert parse_args([]).port == 7999
    assert parse_args(["--port", "8001"]).port == 8001
