"""One look for every figure the report draws, how figures are saved, and where legends go.

- ``styled()``: the report's matplotlib settings (``RC``), where its text sizes are set
  (only notes and labels on the data are smaller, 7–8 pt): 8–10 pt on figures about 8 in
  wide, legible at a page's width (not at a single column's); the Okabe–Ito
  colour-blind-safe palette as the colour cycle (so ``"C0"`` … are its colours); no top
  and right spines; fonts embedded as TrueType in PDF (journals refuse Type 3) and kept as
  text in SVG.
- ``save_figure(figure, stem, formats)``: the figure as ``stem.png`` (``PNG_DPI`` dots per
  inch), ``stem.pdf`` and ``stem.svg`` (vector: they hide no data at any zoom), without
  creation dates, so that drawing the same records twice writes the same bytes.
- ``note_under(ax, text)``: a note under the x label (what an axis leaves out).
- ``place_legend(ax, ...)``: a legend inside the axes where it covers no data, else
  outside, right of them; ``covered(ax, legend)`` is the check (what it covers: drawn
  points and lines, text); ``place_legends(axes)`` does it for every panel of a figure and
  settles them (a legend moved outside changes the others' layout).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.legend import Legend

#: The formats every figure is written in, by default all.
FORMATS = ("png", "pdf", "svg")
#: Dots per inch of a PNG: sharp in print at a column's width.
PNG_DPI = 200
#: Okabe & Ito (2008), "Color Universal Design": told apart with any colour vision; yellow
#: (#F0E442) left out, too pale on white.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000")
RC: dict[str, Any] = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.title_fontsize": 8,
    "figure.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "svg.fonttype": "none",
}
#: What each format would stamp that changes from one drawing to the next: left out.
METADATA = {
    "png": {"Software": None},
    "pdf": {"Creator": None, "Producer": None, "CreationDate": None},
    "svg": {"Creator": None, "Date": None},
}
#: Display pixels between the points ``covered`` checks along a line.
STEP_PIXELS = 3.0


@contextlib.contextmanager
def styled() -> Iterator[None]:
    """The report's look (``RC``, ``PALETTE``) for the figures made inside."""
    import matplotlib as mpl
    from cycler import cycler

    with mpl.rc_context(RC | {"axes.prop_cycle": cycler(color=PALETTE)}):
        yield


def parse_formats(text: str) -> tuple[str, ...]:
    """``"png,pdf"`` as ``("png", "pdf")``; the command lines' ``--formats``.

    Raises:
      ValueError: an empty list or a format not in ``FORMATS`` (named).
    """
    formats = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",")))
    unknown = [f for f in formats if f not in FORMATS]
    if not formats or unknown or "" in formats:
        raise ValueError(f"expected some of {', '.join(FORMATS)}, comma-separated, got {text!r}")
    return formats


def figure_formats(text: str) -> tuple[str, ...]:
    """``parse_formats`` as an argparse type: the commands' ``--formats``."""
    import argparse

    try:
        return parse_formats(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def save_figure(figure: Figure, stem: str | Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write ``figure`` as ``<stem>.<format>`` for each of ``formats``; returns the paths."""
    import matplotlib as mpl

    paths = []
    for kind in formats:
        path = Path(f"{stem}.{kind}")
        with mpl.rc_context({"svg.hashsalt": "flaxmnist"}):  # SVG ids: the same every time
            figure.savefig(path, dpi=PNG_DPI, bbox_inches="tight", metadata=METADATA[kind])
        paths.append(path)
    return paths


def note_under(ax: Axes, text: str) -> None:
    """``text`` under the x label, outside the data (layouts and tight bboxes make room)."""
    ax.annotate(
        text,
        xy=(0.5, 0.0),
        xycoords=ax.xaxis.label,
        xytext=(0, -4),
        textcoords="offset points",
        ha="center",
        va="top",
        fontsize=8,
        color="0.25",
    )


def place_legend(ax: Axes, **kwargs: Any) -> Legend:
    """``ax.legend(**kwargs)`` where matplotlib finds the emptiest corner, or, if it still
    covers a point, a line or a text of the data there, outside, right of the axes."""
    legend = ax.legend(loc="best", **kwargs)
    ax.figure.canvas.draw()
    if covered(ax, legend):
        legend.remove()
        legend = _outside(ax, **kwargs)
    return legend


def place_legends(axes: Sequence[Axes]) -> list[Legend]:
    """A legend in each of a figure's ``axes`` where matplotlib finds the emptiest corner,
    then settled: a legend moved outside changes the layout, and a "best" legend is placed
    again at every draw, so it can come to cover data a draw later. After each draw, every
    legend inside its axes that covers data is moved outside, until none does (each moves
    at most once, so the last of ``len(axes) + 1`` draws finds none)."""
    legends = [ax.legend(loc="best") for ax in axes]
    for _ in range(len(axes) + 1):
        axes[0].figure.canvas.draw()
        moving = [i for i, ax in enumerate(axes) if _inside(legends[i]) and covered(ax, legends[i])]
        if not moving:
            break
        for i in moving:
            legends[i].remove()
            legends[i] = _outside(axes[i])
    return legends


def _inside(legend: Legend) -> bool:
    """Whether ``legend`` is placed in its axes (not ``_outside`` them)."""
    return legend.get_bbox_to_anchor() is legend.axes.bbox


def _outside(ax: Axes, **kwargs: Any) -> Legend:
    """A legend right of ``ax``, its top at the axes' top."""
    return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, **kwargs)


def covered(ax: Axes, legend: Legend) -> int:
    """How many of the data's points (every drawn line and collection, densified to a point
    every ``STEP_PIXELS``) and texts of ``ax`` lie in ``legend``'s box (drawn figure)."""
    box = legend.get_window_extent()
    inside = 0
    for points in _drawn_points(ax):
        x, y = points[:, 0], points[:, 1]
        within = (x >= box.x0) & (x <= box.x1) & (y >= box.y0) & (y <= box.y1)
        inside += int(np.count_nonzero(within))
    for text in ax.texts:
        if text.get_visible() and text.get_text() and _in_axes(ax, text):
            inside += int(text.get_window_extent().overlaps(box))
    return inside


def _in_axes(ax: Axes, text) -> bool:
    """Whether ``text`` is drawn over the axes (not a note under them)."""
    return ax.get_window_extent().overlaps(text.get_window_extent())


def _drawn_points(ax: Axes) -> Iterator[np.ndarray]:
    """The display coordinates of what ``ax`` draws: per line or path, its points."""
    from matplotlib.cbook import STEP_LOOKUP_MAP
    from matplotlib.collections import PathCollection

    for line in ax.get_lines():
        xy = np.asarray(line.get_xydata(), dtype=float)
        if not line.get_visible() or not len(xy):
            continue
        style = line.get_drawstyle()
        if style in STEP_LOOKUP_MAP and style != "default":
            xy = np.column_stack(STEP_LOOKUP_MAP[style](xy[:, 0], xy[:, 1]))
        yield _dense(line.get_transform().transform(xy), line.get_linestyle() != "None")
    for collection in ax.collections:
        if not collection.get_visible():
            continue
        if isinstance(collection, PathCollection):  # a scatter: its points are its offsets
            offsets = collection.get_offsets()
            yield collection.get_offset_transform().transform(np.asarray(offsets, dtype=float))
            continue
        for path in collection.get_paths():
            yield _dense(collection.get_transform().transform(path.vertices), True)


def _dense(points: np.ndarray, joined: bool) -> np.ndarray:
    """The finite ones of ``points`` (display), and if ``joined`` the segments between two
    finite neighbours, at a point every ``STEP_PIXELS`` (a gap, NaN, is not drawn)."""
    finite = np.all(np.isfinite(points), axis=1)
    pieces = [points[finite]]
    if joined:
        for start, end in zip(points[:-1], points[1:], strict=True):
            if np.all(np.isfinite(start)) and np.all(np.isfinite(end)):
                steps = max(1, int(np.hypot(*(end - start)) // STEP_PIXELS))
                pieces.append(start + np.linspace(0, 1, steps + 1)[1:, None] * (end - start))
    return np.concatenate(pieces)
