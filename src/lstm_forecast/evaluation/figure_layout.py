"""Figures drawn on matplotlib's Agg canvas, and margins for the run's one-axes figures computed from
the sizes of their texts without drawing.

matplotlib's constrained layout finds the same margins by laying the figure out (ticks, labels and
all) before it draws it, which made it half the cost of a figure: the forecast figures are drawn on
validation epochs, so that cost was paid during training. Here the tick labels are formatted once,
as the draw will format them, and measured with the font's metrics.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

import numpy as np

from lstm_forecast.evaluation.intervals import COVERAGE_SPAN, rolling_coverage

if TYPE_CHECKING:
    from collections.abc import Sequence

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def figure_to_rgb(figure: Figure) -> np.ndarray:
    """Render ``figure`` on an Agg canvas: ``[height, width, 3]`` uint8."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def import_matplotlib() -> None:
    """Import what the figures need now, at set-up: the first import costs about a second, which would
    otherwise land in the first figure epoch."""
    for name in ("matplotlib.figure", "matplotlib.dates", "matplotlib.backends.backend_agg"):
        importlib.import_module(name)


def new_figure(width: float, height: float, dpi: int) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=dpi)  # margins: fit_margins


COVERAGE_LABEL_SIZE = 8  # the coverage axis' label, in points


def coverage_axis(axes: Axes, times: Sequence, inside: np.ndarray, level: float, label: str) -> Axes:
    """On a right-hand axis of ``axes`` (returned): the share of the last :data:`COVERAGE_SPAN` windows
    whose actual lay in their interval (``inside [N]``, at ``times [N]``), beside the ``level`` (0-1)
    they should reach; the axis labelled ``label``."""
    right = axes.twinx()
    right.plot(times, rolling_coverage(inside), color="tab:purple", linewidth=0.8)
    right.axhline(level, color="tab:purple", linewidth=0.6, linestyle=":")
    right.set_ylim(0, 1.02)
    right.set_ylabel(f"{label}, last {COVERAGE_SPAN}", color="tab:purple", fontsize=COVERAGE_LABEL_SIZE)
    return right


POINTS_PER_INCH = 72.0
LINE_SPACING = 1.2  # a text line's height, as a multiple of its font size
TICK_SPACE = 3.5 + 3.5  # matplotlib's default major tick length + tick label pad, in points
LABEL_PAD = 4.0  # matplotlib's default axis label pad, in points
TITLE_PAD = 6.0  # matplotlib's default title pad, in points
EDGE = 4.0  # blank points kept at every edge of the figure
RIGHT = 18.0  # room for half of the last x tick label, centred on the axes' right edge


def text_width(figure: Figure, texts: Sequence[str], size: float) -> float:
    """Width in points of the widest of ``texts`` at font ``size`` (points), as the Agg canvas the
    figures are drawn on renders them (its hinting makes text a few per cent wider than the font's
    outline metrics)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.font_manager import FontProperties

    renderer = FigureCanvasAgg(figure).get_renderer()
    font = FontProperties(size=size)
    widths = (renderer.get_text_width_height_descent(text, font, ismath=False)[0] for text in texts)
    return max(widths, default=0.0) * POINTS_PER_INCH / figure.dpi


def y_tick_labels(axes: Axes) -> list[str]:
    """The y tick labels a draw of ``axes`` will show, with its data limits as they are now."""
    axes.autoscale_view()
    low, high = sorted(axes.get_ylim())
    ticks = [tick for tick in axes.yaxis.get_major_locator()() if low <= tick <= high]
    return list(axes.yaxis.get_major_formatter().format_ticks(ticks))


def fit_margins(
    figure: Figure,
    y_labels: Sequence[str],
    y_label_size: float = 10.0,
    x_label_lines: int = 1,
    has_y_label: bool = False,
    tick_size: float = 10.0,
    title_size: float = 10.0,
    right_labels: Sequence[str] = (),
    right_label_size: float | None = None,
    panels: int = 1,
) -> None:
    """Place the ``panels`` subplots of ``figure`` (stacked in one column) with margins that fit their
    texts: the widest of ``y_labels`` (the y tick labels, at ``y_label_size``) and the y axis label on
    the left; ``x_label_lines`` lines of x tick labels, offsets and axis label below each panel, its
    title above; on the right, a right-hand axis' tick labels ``right_labels`` and its axis label (at
    ``right_label_size``; None: no label), else room for half of the last x tick label."""
    line = LINE_SPACING * tick_size
    y_label = line + LABEL_PAD if has_y_label else 0.0
    left = EDGE + text_width(figure, y_labels, y_label_size) + TICK_SPACE + y_label
    right = RIGHT
    if right_labels:
        right_label = LINE_SPACING * right_label_size + LABEL_PAD if right_label_size else 0.0
        right = max(RIGHT, EDGE + text_width(figure, right_labels, tick_size) + TICK_SPACE + right_label)
    below = TICK_SPACE + x_label_lines * (line + LABEL_PAD)
    above = LINE_SPACING * title_size + TITLE_PAD
    width, height = (POINTS_PER_INCH * inches for inches in figure.get_size_inches())
    bottom, top = min((EDGE + below) / height, 0.5), max(1 - (EDGE + above) / height, 0.55)
    # hspace is the gap between panels as a fraction of a panel's height.
    panel_height = (height * (top - bottom) - (panels - 1) * (below + above)) / panels
    figure.subplots_adjust(
        left=min(left / width, 0.5),
        right=max(1 - right / width, 0.5),
        bottom=bottom,
        top=top,
        hspace=(below + above) / panel_height if panels > 1 and panel_height > 0 else None,
    )
