"""Pictures of a run, drawn with matplotlib's Agg backend (no display needed) and returned as PNG bytes."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd

__all__ = ["report_figure_png", "ic_figure_png"]


def _figure(nrows: int, height: float):
    # the object-oriented API with an explicit Agg canvas never touches pyplot's global backend
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(11, height), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, 1, sharex=True)
    return fig, np.atleast_1d(axes)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def report_figure_png(report: pd.DataFrame, title: str = "Portfolio (1day)", benchmark: bool = True) -> bytes:
    """Four panels from a ``report_normal`` frame: cumulative return of the portfolio and the benchmark,
    cumulative excess return with and without cost, drawdown of the excess return with cost, and turnover.
    Returns are summed (not compounded), as Qlib's report graphs and ``risk_analysis(mode="sum")`` do.

    ``benchmark=False`` (a backtest with ``benchmark: null``): no benchmark line, and the panels say
    "return" instead of "excess return", since there is nothing to exceed."""
    r, bench, cost = report["return"], report["bench"], report["cost"]
    excess_wo = (r - bench).cumsum()
    excess_w = (r - bench - cost).cumsum()
    drawdown = excess_w - excess_w.cummax()
    what = "excess return" if benchmark else "return (no benchmark)"
    fig, ax = _figure(4, 11)
    x = report.index
    ax[0].plot(x, (r - cost).cumsum(), label="portfolio (after cost)", color="tab:blue")
    if benchmark:
        ax[0].plot(x, bench.cumsum(), label="benchmark", color="tab:gray")
    ax[0].set_title(f"{title}: cumulative return" + ("" if benchmark else " (no benchmark)"))
    ax[1].plot(x, excess_wo, label=f"{what} without cost", color="tab:green")
    ax[1].plot(x, excess_w, label=f"{what} with cost", color="tab:red")
    ax[1].set_title(f"cumulative {what}")
    ax[2].fill_between(x, drawdown, 0, color="tab:red", alpha=0.35, label=f"drawdown ({what}, with cost)")
    ax[2].set_title(f"drawdown of the {what} with cost (max {drawdown.min():.2%})")
    _daily_area(ax[3], x, report["turnover"].to_numpy(dtype=float), color="tab:purple", alpha=0.6,
                label="daily turnover")
    ax[3].set_title("turnover (traded value / previous account value)")
    for a in ax:
        a.grid(True, alpha=0.3)
        a.legend(loc="upper left", fontsize=9)
        a.axhline(0, color="black", linewidth=0.6)
    for a in ax[:3]:
        a.yaxis.set_major_formatter(_pct_formatter())
    return _png(fig)


def ic_figure_png(ic: pd.Series, ric: pd.Series, window: int = 20) -> bytes:
    """Daily IC and Rank IC as stepped areas with their ``window``-day rolling means, one panel each."""
    fig, ax = _figure(2, 7)
    for a, s, name, color in ((ax[0], ic, "IC", "tab:blue"), (ax[1], ric, "Rank IC", "tab:orange")):
        s = s.astype("float64")
        _daily_area(a, s.index, s.to_numpy(), color=color, alpha=0.45, label=f"daily {name}")
        a.plot(s.index, s.rolling(window, min_periods=1).mean(), color="black", linewidth=1.4,
               label=f"{window}-day rolling mean")
        a.axhline(0, color="black", linewidth=0.6)
        a.set_title(f"{name}: mean {s.mean():.4f}, IR {s.mean() / s.std():.3f}")
        a.grid(True, alpha=0.3)
        a.legend(loc="upper left", fontsize=9)
    return _png(fig)


def _daily_area(ax, x, y, **style) -> None:
    """Daily values as a stepped area: hundreds of bar patches made a panel most of the drawing time. A
    single day has no width as an area, so it stays a bar."""
    if len(x) < 2:
        ax.bar(x, y, width=1.0, **style)
    else:
        ax.fill_between(x, y, 0, step="mid", **style)


def _pct_formatter():
    from matplotlib.ticker import PercentFormatter
    return PercentFormatter(1.0)
