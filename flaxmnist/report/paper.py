"""Tables for a paper: the printed table's rows as LaTeX (booktabs) and as Markdown.

``python -m flaxmnist.report DIR --latex`` writes ``DIR/<study>-table.tex`` and
``--markdown`` ``DIR/<study>-table.md``: the same rows and cells as the table the sweep
prints (``table.table_cells``: mean ± sample std over seeds), the configuration the
selecting split chooses in bold, and a caption that says the protocol: what ran, over how
many seeds, which split selects, and that the test accuracy never does (or, under the
notebook's protocol, that it did and is optimistic).

LaTeX needs ``\\usepackage{booktabs}``; every cell is escaped, ``±`` is ``$\\pm$``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flaxmnist.report.table import (
    best_row,
    split_by_study,
    study_description,
    summarize,
    table_cells,
    val_header,
    varied_keys,
    what_ran,
)

Records = Sequence[dict[str, Any]]
#: The kinds of table, and the suffix of their files.
KINDS = {"latex": "tex", "markdown": "md"}
#: LaTeX's special characters, as text.
LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def caption(records: Records, description: str = "") -> str:
    """The protocol in words, for under a table of one study's ``records``."""
    rows = summarize(records)
    seeds = rows[0]["seeds"]
    best = best_row(rows)
    spread = f"mean ± sample std over {seeds} paired seeds" if seeds > 1 else "one seed"
    holdout = records[0]["config"].get("validate_on", "holdout") == "holdout"
    selects = (
        "Selected on the holdout (the last 10,000 training images, never trained on); the "
        "test accuracy is reported, never used to select."
        if holdout
        else "Selected on the TEST set (the notebook's protocol): the selected configuration's "
        "test accuracy is optimistic."
    )
    named = f" ({description})" if description else ""
    return (
        f"Study {records[0]['study']}{named}: accuracy % after the last epoch, {spread}; "
        f"ran {what_ran(records)}. {selects} In bold: the selected configuration, "
        f"#{best['config_index'] + 1}."
    )


def _rows(records: Records) -> tuple[list[str], list[list[str]], int]:
    """The printed table's header and rows, and the position of the selected row."""
    header, body = table_cells(records, varied_keys(records), val_header(records))
    rows = summarize(records)
    selected = rows.index(best_row(rows))
    return header, body, selected


def _alignment(records: Records, columns: int) -> str:
    """The number right, the hyperparameters left, the figures right, the status left."""
    keys = len(varied_keys(records))
    return "r" + "l" * keys + "r" * (columns - keys - 2) + "l"


def latex_table(records: Records, description: str = "") -> str:
    """One study's table as a LaTeX ``table`` with booktabs rules (see the module)."""
    header, body, selected = _rows(records)
    align = _alignment(records, len(header))
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(caption(records, description))}}}",
        rf"\label{{tab:{latex_escape(records[0]['study'])}}}",
        rf"\begin{{tabular}}{{{align}}}",
        r"\toprule",
        " & ".join(latex_escape(cell) for cell in header) + r" \\",
        r"\midrule",
    ]
    for position, row in enumerate(body):
        cells = [latex_escape(cell) for cell in row]
        if position == selected:
            cells = [rf"\textbf{{{cell}}}" if cell else cell for cell in cells]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def latex_escape(text: str) -> str:
    """``text`` as LaTeX typesets it: special characters escaped, ``±`` as math."""
    escaped = "".join(LATEX_ESCAPES.get(character, character) for character in text)
    return escaped.replace("±", r"$\pm$").replace("×", r"$\times$")


def markdown_table(records: Records, description: str = "") -> str:
    """One study's table in Markdown (a pipe table, the selected row in bold, the caption
    after it as ``Table: …``, which pandoc reads as the caption)."""
    header, body, selected = _rows(records)
    lines = [
        "| " + " | ".join(_markdown_escape(cell) for cell in header) + " |",
        "|"
        + "|".join({"r": "---:", "l": "---"}[a] for a in _alignment(records, len(header)))
        + "|",
    ]
    for position, row in enumerate(body):
        cells = [_markdown_escape(cell) for cell in row]
        if position == selected:
            cells = [f"**{cell}**" if cell else cell for cell in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", f"Table: {caption(records, description)}"]) + "\n"


def _markdown_escape(text: str) -> str:
    return text.replace("|", r"\|").replace("*", r"\*")


def write_tables(
    records: Records,
    directory: str | Path,
    kinds: Sequence[str],
    descriptions: Mapping[str, str] | None = None,
) -> list[Path]:
    """Write each study's table as ``<study>-table.tex`` and/or ``.md`` (``kinds``:
    ``"latex"``, ``"markdown"``) into ``directory``; returns the paths."""
    makers = {"latex": latex_table, "markdown": markdown_table}
    paths = []
    for study, group in split_by_study(records).items():
        description = study_description(study, group, descriptions)
        for kind in kinds:
            path = Path(directory) / f"{study}-table.{KINDS[kind]}"
            path.write_text(makers[kind](group, description))
            paths.append(path)
    return paths
