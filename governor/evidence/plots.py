"""One PNG per signal with alert firing periods shaded. matplotlib is imported lazily, with the
Agg backend, so importing this module costs nothing and no display is ever needed."""

from __future__ import annotations

import datetime as dt
import io

from governor.evidence.alerts import Alert
from governor.evidence.promrange import Series
from governor.evidence.timewindow import Window

MAX_LEGEND = 8  # more lines than this are unreadable at a glance; the CSV has them all


def render_png(title: str, unit: str, series: list[Series], window: Window, alerts: list[Alert]) -> bytes:
    """A PNG of `series` over the window; alerts shaded red and named once in the legend."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import dates as mdates
    from matplotlib.figure import Figure  # Figure without pyplot: no global state between plots

    def to_dt(t: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(t, tz=dt.UTC)

    fig = Figure(figsize=(10, 4), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    for i, s in enumerate(sorted(series, key=lambda s: s.legend())):
        xs, ys = [to_dt(t) for t, _ in s.points], [v for _, v in s.points]
        # matplotlib plots datetimes through its date units; its stubs only know floats
        ax.plot(xs, ys, label=s.legend() if i < MAX_LEGEND else None, linewidth=1.4)  # type: ignore[arg-type]
    shaded = set()
    for a in alerts:
        end = a.ends if a.ends is not None else window.end
        label = f"alert: {a.name}" if a.name not in shaded else None
        shaded.add(a.name)
        ax.axvspan(to_dt(max(a.starts, window.start)), to_dt(min(end, window.end)), color="red", alpha=0.15, label=label)  # type: ignore[arg-type]
    ax.set_xlim(to_dt(window.start), to_dt(window.end))  # type: ignore[arg-type]
    ax.set_title(title)
    ax.set_ylabel(unit)
    ax.set_xlabel("time (UTC)")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S", tz=dt.UTC))
    ax.grid(True, alpha=0.3)
    if not series:
        ax.text(0.5, 0.5, "no data in the window", transform=ax.transAxes, ha="center", va="center", color="grey")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
