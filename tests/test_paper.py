"""Tables for a paper (flaxmnist.report.paper): LaTeX and Markdown of the same rows as the
printed table, checked cell by cell against summary.csv of a committed run."""

import csv
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from flaxmnist.report import load_results, split_by_study, write_summary_csv
from flaxmnist.report.__main__ import main
from flaxmnist.report.paper import latex_escape, latex_table, markdown_table

ROOT = Path(__file__).resolve().parent.parent
#: The notebook's five studies, 3 seeds each (REPRODUCTION.md).
RUN = ROOT / "reproduction" / "all-holdout"


@pytest.fixture(scope="module")
def studies():
    return split_by_study(load_results(RUN))


@pytest.fixture(scope="module")
def csv_rows(studies, tmp_path_factory):
    path = write_summary_csv(
        [r for g in studies.values() for r in g], tmp_path_factory.mktemp("c") / "s.csv"
    )
    with path.open() as handle:
        return list(csv.DictReader(handle))


def latex_rows(text):
    """Each data row of a LaTeX table: its cells as text, and whether it is bold."""
    body = text.split("\\midrule\n")[1].split("\\bottomrule")[0]
    rows = []
    for line in body.strip().splitlines():
        cells = line.removesuffix(" \\\\").split(" & ")
        bold = all(c.startswith("\\textbf{") for c in cells if c)
        cells = [re.sub(r"^\\textbf\{(.*)\}$", r"\1", c).replace("$\\pm$", "±") for c in cells]
        rows.append(([c.replace("\\_", "_") for c in cells], bold))
    return rows


def markdown_rows(text):
    lines = [line for line in text.splitlines() if line.startswith("| ")][1:]
    rows = []
    for line in lines:
        cells = [c.strip() for c in line.strip("| ").split(" | ")]
        bold = all(c.startswith("**") for c in cells if c)
        rows.append(([c.strip("*") for c in cells], bold))
    return rows


def check_against_csv(rows, study, csv_rows):
    """Every row's number, holdout and test mean ± std are the CSV's, to 2 decimals; the
    bold row is the table's selection: the highest holdout mean of those trained longest."""
    expected = [r for r in csv_rows if r["study"] == study]
    assert [cells[0] for cells, _ in rows] == [r["config"] for r in expected]
    for (cells, _), row in zip(rows, expected, strict=True):
        shown = [c for c in cells if "±" in c]
        assert shown[0] == f"{float(row['val_mean_pct']):.2f} ± {float(row['val_std_pct']):.2f}"
        assert shown[1] == f"{float(row['test_mean_pct']):.2f} ± {float(row['test_std_pct']):.2f}"
    bold = [cells[0] for cells, is_bold in rows if is_bold]
    best = max(
        expected, key=lambda r: (int(r["epochs"]), float(r["val_mean_pct"]), -int(r["config"]))
    )
    assert bold == [best["config"]]


@pytest.mark.parametrize("study", ["lr", "hidden", "l2", "dropout", "three-layer"])
def test_latex_and_markdown_hold_the_csvs_rows(study, studies, csv_rows):
    records = studies[study]
    latex = latex_table(records, "a description")
    assert latex.startswith("\\begin{table}") and "\\toprule" in latex
    assert "mean $\\pm$ sample std over 3 paired seeds" in latex
    assert "Selected on the holdout" in latex and "never used to select" in latex
    check_against_csv(latex_rows(latex), study, csv_rows)
    markdown = markdown_table(records, "a description")
    assert "Table: Study " in markdown and "(a description)" in markdown
    check_against_csv(markdown_rows(markdown), study, csv_rows)


def test_latex_escapes_what_it_must():
    assert latex_escape("a_b 50% #1 {x} & $") == r"a\_b 50\% \#1 \{x\} \& \$"
    assert latex_escape("1.00 ± 0.10") == r"1.00 $\pm$ 0.10"


def test_the_command_writes_both_tables(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("results.jsonl", "manifest.json"):
        shutil.copy(RUN / name, run / name)
    assert main([str(run), "--latex", "--markdown", "--formats", "png"]) == 0
    out = capsys.readouterr().out
    for study in ("lr", "three-layer"):
        for suffix in ("tex", "md"):
            assert f"wrote {run / f'{study}-table.{suffix}'}" in out
    if shutil.which("pdflatex") is None:
        pytest.skip("no pdflatex here: the LaTeX is checked as text only")
    document = "\\documentclass{article}\\usepackage{booktabs}\\begin{document}\n"
    document += (run / "lr-table.tex").read_text() + "\\end{document}\n"
    (tmp_path / "t.tex").write_text(document)
    command = ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
