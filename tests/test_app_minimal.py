import pytest

from analysis import curves
from app.__main__ import parse_args
from app.tabs.credit import credit_plot


def test_credit_plot_handler_returns_a_figure_and_a_summary():
    fig, table = credit_plot(["dpo", "dde-closed"], next(iter(curves.SCHEDULER_PRESETS)), 1000, False, False)
    assert [trace.name for trace in fig.data] == ["dpo", "dde-closed"]
    assert len(fig.data[1].y) == 1000
    assert "| dde-closed | 354 | 77.9% |" in table


@pytest.mark.parametrize("args, message", [
    (([], "linear (DDPM)", 1000), "at least one variant"), ((["dpo"], "linear (DDPM)", 3), r"T \(training"),
    ((["dpo"], "linear (DDPM)", 2.5), "whole number"), ((["dpo"], None, 1000), "scheduler config"),
    (("dpo", "linear (DDPM)", 1000), "list of variant names"), ((["nope"], "linear (DDPM)", 1000), "unknown credit"),
])
def test_credit_plot_rejects_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        credit_plot(*args, False, False)


def test_defaults_bind_locally(monkeypatch):
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    args = parse_args([])
    assert (args.host, args.port, args.share, args.monitoring) == ("127.0.0.1", 7860, False, False)
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7999")
    assert parse_args([]).port == 7999
    assert parse_args(["--port", "8001"]).port == 8001
