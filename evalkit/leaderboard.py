"""A leaderboard of runs beside published figures, each number shown with the protocol it was taken under.

A number without its protocol misleads: "GPT-4 scores 87.2 on MMLU" is GPT-4o-0513 measured 0-shot with
chain of thought, not GPT-4 5-shot. So every cell carries a protocol badge, every published figure a
numbered source, and a run set beside a figure measured another way is marked with what differs.
Output is one self-contained HTML file (inline CSS and SVG, no script, nothing fetched), Markdown or CSV.
"""
from __future__ import annotations

import csv
import html
import io
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Sequence

from evalkit.errors import UserError
from evalkit.protocol import Protocol, differences, run_protocol
from evalkit.rundir import CONFIG, RESULTS, RunDir

Format = Literal["html", "md", "csv"]
FORMATS: tuple[Format, ...] = ("html", "md", "csv")

# Column order; a run's benchmark outside this list gets a column after them.
BENCHMARKS = ("MMLU", "AIME 2024", "AIME 2025", "MATH-500", "HumanEval", "HumanEval+", "LiveCodeBench", "Codeforces")
UNITS = ("percent", "rating", "percentile")
REFERENCE_COLUMNS = ("model", "benchmark", "value", "unit", "shots", "chain_of_thought", "samples", "metric",
                     "temperature", "max_tokens", "window_start", "window_end", "source", "locator", "notes")
MISMATCH = "≠ protocol"
CONTAMINATED = "⚠ contaminated"


@dataclass(frozen=True)
class Contamination:
    """LiveCodeBench problems released on or before the model's training cutoff may have been seen in
    training; a window starting on or before the cutoff includes them."""

    cutoff: str | None
    window_start: str | None
    clean_value: float | None  # the score on problems after the cutoff, in percent, when the run has it

    @property
    def contaminated(self) -> bool | None:
        if self.cutoff is None:
            return None
        return self.window_start is None or self.window_start <= self.cutoff

    def describe(self) -> str:
        if self.contaminated is None:
            return "model cutoff unknown (run with --model-cutoff): contamination not checked"
        if not self.contaminated:
            return f"window starts {self.window_start}, after the model cutoff {self.cutoff}: no known contamination"
        clean = "" if self.clean_value is None else f"; problems after the cutoff only: {self.clean_value:.1f}"
        return f"window starts {self.window_start or 'open'}, on or before the model cutoff {self.cutoff}{clean}"


@dataclass(frozen=True)
class Figure:
    """One number in a cell: a run's headline metric (value and CI in percent) or a published figure."""

    benchmark: str
    value: float
    unit: str
    protocol: Protocol
    ci: tuple[float, float] | None = None
    task: str | None = None
    source: str | None = None
    locator: str | None = None
    notes: str = ""
    contamination: Contamination | None = None

    def shown(self) -> str:
        return f"{self.value:.0f}" if self.unit == "rating" else f"{self.value:.1f}"


@dataclass(frozen=True)
class Entry:
    """A leaderboard row: one run, or one model as one source reports it."""

    label: str
    kind: Literal["run", "reference"]
    detail: str  # the run directory, or the source
    figures: tuple[Figure, ...]
    model: str

    def cell(self, benchmark: str) -> list[Figure]:
        return [figure for figure in self.figures if figure.benchmark == benchmark]


@dataclass(frozen=True)
class Mismatch:
    """Reference figures in a run figure's column that were measured another way, and how."""

    differences: tuple[str, ...]
    references: tuple[tuple[Entry, Figure], ...]


@dataclass
class Leaderboard:
    entries: list[Entry]
    benchmarks: list[str]
    # Footnote numbers of the sources, in table order, so that every format numbers them alike.
    notes: dict[tuple[str, str], int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.notes = {}
        for figure in (f for entry in self.entries for f in entry.figures if f.source):
            self.notes.setdefault((figure.source, figure.locator or ""), len(self.notes) + 1)

    @property
    def runs(self) -> list[Entry]:
        return [entry for entry in self.entries if entry.kind == "run"]

    @property
    def references(self) -> list[Entry]:
        return [entry for entry in self.entries if entry.kind == "reference"]

    def mismatches(self, figure: Figure) -> list[Mismatch]:
        """The reference figures of the same benchmark and unit whose protocol differs from `figure`'s,
        grouped by what differs."""
        groups: dict[tuple[str, ...], list[tuple[Entry, Figure]]] = {}
        for entry in self.references:
            for reference in (r for r in entry.cell(figure.benchmark) if r.unit == figure.unit):
                found = tuple(differences(figure.protocol, reference.protocol))
                if found:
                    groups.setdefault(found, []).append((entry, reference))
        return [Mismatch(found, tuple(pairs)) for found, pairs in groups.items()]

    def unmatched(self, reference: Figure) -> bool:
        """A reference figure that no run figure of its column was measured like (hatched in charts)."""
        runs = [f for entry in self.runs for f in entry.cell(reference.benchmark) if f.unit == reference.unit]
        return bool(runs) and all(differences(run.protocol, reference.protocol) for run in runs)

    def source_note(self, figure: Figure) -> int:
        return self.notes[(figure.source or "", figure.locator or "")]

    def source_notes(self) -> list[tuple[int, str]]:
        return [(number, f"{source}, {locator}.") for (source, locator), number in self.notes.items()]

    def mismatch_text(self, entry: Entry, figure: Figure) -> str:
        """The mark in words: the run's protocol, then each group of differing references and what differs."""
        groups = []
        for mismatch in self.mismatches(figure):
            names = ", ".join(f"{ref_entry.label} [{self.source_note(ref)}]" for ref_entry, ref in mismatch.references)
            groups.append(f"{names} in: {', '.join(mismatch.differences)}")
        return f"{entry.label}, {figure.benchmark} ({figure.task}: {figure.protocol.badge()}) differs from " + "; from ".join(groups)


# --- reading runs ---------------------------------------------------------------------------------


def _is_run(path: Path) -> bool:
    return (path / CONFIG).is_file()


def expand_run_dirs(paths: Iterable[Path]) -> list[Path]:
    """Run directories, or folders whose subdirectories are runs (as `--output` writes them); anything
    else is an error, so a typo never yields a silently shorter leaderboard."""
    found: list[Path] = []
    for path in map(Path, paths):
        if _is_run(path):
            found.append(path)
            continue
        children = sorted(child for child in path.iterdir() if _is_run(child)) if path.is_dir() else []
        if not children:
            raise UserError(f"{path} is not a run directory (no {CONFIG}) nor a folder of them; "
                            f"pass directories written by `evalkit run` (e.g. runs/<run>)")
        found.extend(children)
    return found


def headline_metric(spec: Mapping[str, Any], metrics: Mapping[str, Any], k: int) -> str | None:
    """The metric a DeepSeek-R1-style table reports: accuracy for likelihood tasks; for generation,
    pass@1 as the mean over the k samples (avg@k, or unbiased pass@1), accuracy when k = 1."""
    preferred = ("accuracy",) if spec.get("request_kind") != "generate" else (f"avg@{k}", "pass@1", "accuracy", "avg@1")
    return next((name for name in preferred if name in metrics), None)


def _contamination(source: Mapping[str, Any], task_results: Mapping[str, Any], metric: str) -> Contamination | None:
    if "since" not in source and "until" not in source and "model_cutoff" not in source:
        return None
    clean = task_results.get("breakdown", {}).get("contaminated", {}).get("no", {}).get(metric)
    return Contamination(source.get("model_cutoff"), source.get("since"), None if clean is None else 100 * clean)


def _model_name(uri: str) -> str:
    location = uri.split(":", 1)[-1].rstrip("/")
    return Path(location).name or uri


def read_run(path: Path) -> Entry:
    run = RunDir(path)
    config, results = run.read_json(CONFIG), run.read_json(RESULTS)
    figures = []
    try:
        for task, task_results in results["tasks"].items():
            spec = config["tasks"][task]
            if task_results.get("n_errors"):
                # Its figure covers only the samples that were answered: not comparable with a whole run.
                raise UserError(f"{path}: task {task} has {task_results['n_errors']} failed request(s); run the run's "
                                f"command again to retry them before putting it on a leaderboard")
            metrics = task_results["metrics"]
            metric = headline_metric(spec, metrics, int(task_results.get("n_per_sample", 1)))
            if metric is None:
                raise UserError(f"{path / RESULTS}: task {task} has none of accuracy, avg@k, pass@1; "
                                f"re-score it with `evalkit rescore {path}`")
            found = metrics[metric]
            ci = (100 * found["ci_low"], 100 * found["ci_high"]) if found.get("ci_low") is not None else None
            protocol = run_protocol(config, task, metric)
            figures.append(Figure(protocol.benchmark, 100 * float(found["value"]), "percent", protocol, ci, task,
                                  contamination=_contamination(spec.get("data_source", {}), task_results, metric)))
        model = _model_name(str(config["model"]["uri"]))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise UserError(f"{path}: {CONFIG} or {RESULTS} lacks {error} (written by another evalkit version?); "
                        f"re-run or `evalkit rescore {path}`") from None
    return Entry(f"{model} · {path.name}", "run", str(path), tuple(figures), model)


# --- reading the reference table -------------------------------------------------------------------


def default_references() -> Path:
    return Path(str(resources.files("evalkit.leaderboards") / "reference_scores.csv"))


def _optional(text: str, parse: Any) -> Any:
    return parse(text) if text.strip() else None


def _boolean(text: str) -> bool:
    if text not in ("true", "false"):
        raise ValueError(f"chain_of_thought must be true or false, got {text!r}")
    return text == "true"


def _reference_figure(row: Mapping[str, str]) -> Figure:
    if None in row or None in row.values():  # csv.DictReader's marks of a row longer or shorter than the header
        raise ValueError(f"the row does not have the header's {len(REFERENCE_COLUMNS)} cells")
    if row["unit"] not in UNITS:
        raise ValueError(f"unit must be one of {', '.join(UNITS)}, got {row['unit']!r}")
    for name in ("model", "benchmark", "metric", "source", "locator"):
        if not row[name].strip():
            raise ValueError(f"{name} is empty")
    window = (row["window_start"] or None, row["window_end"] or None)
    protocol = Protocol(
        benchmark=row["benchmark"],
        shots=int(row["shots"]),
        chain_of_thought=_boolean(row["chain_of_thought"]),
        samples=_optional(row["samples"], int),
        metric=row["metric"],
        temperature=_optional(row["temperature"], float),
        max_tokens=_optional(row["max_tokens"], int),
        window=window if any(window) else None,
    )
    return Figure(row["benchmark"], float(row["value"]), row["unit"], protocol, source=row["source"],
                  locator=row["locator"], notes=row["notes"])


def load_references(path: Path | None = None) -> list[Entry]:
    """The published figures, one entry per (model, source), in the table's order."""
    path = Path(path) if path is not None else default_references()
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise UserError(f"cannot read the reference table {path} ({error}); pass a CSV in the schema of leaderboards/README.md") from None
    missing = [name for name in REFERENCE_COLUMNS if rows and name not in rows[0]]
    if not rows or missing:
        raise UserError(f"{path} has no rows or lacks columns {', '.join(missing)}; see the schema in leaderboards/README.md")
    grouped: dict[tuple[str, str], list[Figure]] = {}
    for line, row in enumerate(rows, start=2):
        try:
            figure = _reference_figure(row)
        except (ValueError, TypeError) as error:
            raise UserError(f"{path}:{line}: {error}; fix the row (schema in leaderboards/README.md)") from None
        grouped.setdefault((row["model"], row["source"]), []).append(figure)
    return [Entry(model, "reference", source, tuple(figures), model) for (model, source), figures in grouped.items()]


def build_leaderboard(run_dirs: Sequence[Path], references: Path | None = None) -> Leaderboard:
    """Runs (or folders of runs) beside the reference table (the bundled one when `references` is None)."""
    entries = [read_run(path) for path in expand_run_dirs(run_dirs)] + load_references(references)
    present = {figure.benchmark for entry in entries for figure in entry.figures}
    extra = [b for b in dict.fromkeys(f.benchmark for e in entries for f in e.figures) if b not in BENCHMARKS]
    return Leaderboard(entries, [b for b in BENCHMARKS if b in present] + extra)


# --- rendering -------------------------------------------------------------------------------------


def render(leaderboard: Leaderboard, format: Format) -> str:
    if format not in FORMATS:
        raise UserError(f"unknown leaderboard format {format!r}; use one of {', '.join(FORMATS)}")
    return {"html": render_html, "md": render_md, "csv": render_csv}[format](leaderboard)


def write_leaderboard(run_dirs: Sequence[Path], output: Path, format: Format | None = None,
                      references: Path | None = None) -> Path:
    """Build and write; the format defaults to the output's suffix (.html, .md, .csv)."""
    output = Path(output)
    chosen = format or {".md": "md", ".csv": "csv"}.get(output.suffix.lower(), "html")
    text = render(build_leaderboard(run_dirs, references), chosen)  # type: ignore[arg-type]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    return output


def _ci_text(figure: Figure) -> str:
    return f"[{figure.ci[0]:.1f}, {figure.ci[1]:.1f}]" if figure.ci else ""


def _unit_text(figure: Figure) -> str:
    return {"percent": "", "rating": " rating", "percentile": " %ile"}[figure.unit]


# CSV: one line per figure, for spreadsheets and scripts.

CSV_COLUMNS = ("entry", "kind", "benchmark", "value", "unit", "ci_low", "ci_high", "task", "metric", "protocol",
               "source", "locator", "protocol_mismatch", "window", "contamination", "clean_value")


def render_csv(leaderboard: Leaderboard) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for entry in leaderboard.entries:
        for figure in entry.figures:
            protocol = figure.protocol
            mismatch = leaderboard.mismatch_text(entry, figure) if entry.kind == "run" and leaderboard.mismatches(figure) else ""
            window = "..".join(part or "" for part in protocol.window) if protocol.window else ""
            contamination = figure.contamination
            writer.writerow([
                entry.label, entry.kind, figure.benchmark, figure.shown(), figure.unit,
                f"{figure.ci[0]:.1f}" if figure.ci else "", f"{figure.ci[1]:.1f}" if figure.ci else "",
                figure.task or "", protocol.metric, protocol.badge(), figure.source or "", figure.locator or "",
                mismatch, window, contamination.describe() if contamination else "",
                f"{contamination.clean_value:.1f}" if contamination and contamination.clean_value is not None else "",
            ])
    return out.getvalue()


# Markdown: the table, then numbered sources and the mismatch notes.


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _md_cell(leaderboard: Leaderboard, entry: Entry, figures: list[Figure], marks: list[str]) -> str:
    parts = []
    for figure in figures:
        text = f"**{figure.shown()}**{_unit_text(figure)}"
        if figure.ci:
            text += f" {_ci_text(figure)}"
        text += f" `{figure.protocol.badge()}`"
        if figure.source:
            text += f" [{leaderboard.source_note(figure)}]"
        if entry.kind == "run" and leaderboard.mismatches(figure):
            marks.append(leaderboard.mismatch_text(entry, figure))
            text += f" {MISMATCH} (m{len(marks)})"
        if figure.contamination and figure.contamination.contaminated:
            text += f" {CONTAMINATED}"
            if figure.contamination.clean_value is not None:
                text += f" (clean {figure.contamination.clean_value:.1f})"
        parts.append(text)
    return _md_escape("<br>".join(parts)) if parts else "–"


def render_md(leaderboard: Leaderboard) -> str:
    marks: list[str] = []
    lines = ["# evalkit leaderboard", "",
             "Runs (value and 95% CI, percent) beside published figures. `badge` = the protocol; "
             f"{MISMATCH} marks a run whose column holds figures measured another way (notes m1, m2, ...); "
             "[n] = source.", "",
             "| model | " + " | ".join(leaderboard.benchmarks) + " |",
             "|---|" + "---|" * len(leaderboard.benchmarks)]
    for entry in leaderboard.entries:
        label = f"**{entry.label}** (run)" if entry.kind == "run" else entry.label
        cells = [_md_cell(leaderboard, entry, entry.cell(b), marks) for b in leaderboard.benchmarks]
        lines.append(f"| {_md_escape(label)} | " + " | ".join(cells) + " |")
    lines += ["", "## Sources", ""] + [f"{number}. {text}" for number, text in leaderboard.source_notes()]
    if marks:
        lines += ["", "## Protocol mismatches", ""] + [f"- m{i}: {text}" for i, text in enumerate(marks, 1)]
    contaminations = _contamination_notes(leaderboard)
    if contaminations:
        lines += ["", "## LiveCodeBench windows", ""] + [f"- {text}" for text in contaminations]
    return "\n".join(lines) + "\n"


def _contamination_notes(leaderboard: Leaderboard) -> list[str]:
    return [f"{entry.label} ({figure.task}): {figure.contamination.describe()}"
            for entry in leaderboard.runs for figure in entry.figures if figure.contamination]


# HTML: one file, inline CSS and SVG; tooltips are title attributes, so no script is needed.

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d2330;margin:24px;max-width:1500px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.lede{color:#4a5160;margin:0 0 14px}
table.board{border-collapse:collapse;width:100%}
.board th,.board td{border-bottom:1px solid #e3e6ec;padding:6px 8px;vertical-align:top;text-align:left}
.board th{background:#f4f6f9;font-weight:600;position:sticky;top:0}
.board tr.run td{background:#f3f8ff}
.scroll{overflow-x:auto}
.label{min-width:170px;max-width:250px}.name{font-weight:600}.detail{display:block;color:#6a7180;font-size:11.5px;overflow-wrap:anywhere}
.fig{display:block;margin:0 0 4px}.val{font-weight:650;font-size:15px}.ci{color:#4a5160;font-size:12px}
.badge{display:inline-block;background:#eef0f4;border:1px solid #d6dae2;border-radius:4px;padding:0 5px;font-size:11px;color:#394050}
sup.fn a{color:#2255aa;text-decoration:none;font-size:10.5px}
.mismatch{display:inline-block;background:#fde8e8;color:#a11d1d;border:1px solid #f1b4b4;border-radius:4px;padding:0 4px;font-size:11px;font-weight:600;cursor:help}
.contam{display:inline-block;background:#fff3d6;color:#7a4d00;border:1px solid #f0d28c;border-radius:4px;padding:0 4px;font-size:11px;cursor:help}
.clean{color:#4a5160;font-size:12px}
.empty{color:#b0b5bf}
.charts{display:flex;flex-wrap:wrap;gap:18px}
.chart{margin:0;border:1px solid #e3e6ec;border-radius:6px;padding:8px 10px}.chart h3{font-size:14px;margin:0 0 4px}
.legend{font-size:12px;color:#4a5160}
ol.notes,ul.notes{font-size:12.5px;color:#394050;padding-left:22px}ol.notes li,ul.notes li{margin:2px 0}
"""

RUN_COLOR, REFERENCE_COLOR, MISMATCH_COLOR = "#2f6fd0", "#9aa3b2", "#c0392b"


def _h(text: object) -> str:
    return html.escape(str(text), quote=True)


def _html_figure(leaderboard: Leaderboard, entry: Entry, figure: Figure, marks: dict[int, int]) -> str:
    parts = [f'<span class="val">{_h(figure.shown())}</span>{_h(_unit_text(figure))}']
    if figure.ci:
        parts.append(f' <span class="ci">{_h(_ci_text(figure))}</span>')
    if figure.source:
        number = leaderboard.source_note(figure)
        parts.append(f'<sup class="fn"><a href="#src{number}" title="{_h(figure.source)}, {_h(figure.locator)}">[{number}]</a></sup>')
    parts.append(f' <span class="badge" title="{_h(figure.notes or figure.task)}">{_h(figure.protocol.badge())}</span>')
    if entry.kind == "run" and leaderboard.mismatches(figure):
        number = marks.setdefault(id(figure), len(marks) + 1)
        parts.append(f' <a class="mismatch" href="#mis{number}" title="{_h(leaderboard.mismatch_text(entry, figure))}">'
                     f'{MISMATCH} m{number}</a>')
    if figure.contamination:
        contamination = figure.contamination
        if contamination.contaminated is not False:
            mark = CONTAMINATED if contamination.contaminated else "? cutoff unknown"
            parts.append(f' <span class="contam" title="{_h(contamination.describe())}">{_h(mark)}</span>')
        if contamination.clean_value is not None:
            parts.append(f' <span class="clean">clean subset: {contamination.clean_value:.1f}</span>')
    return f'<span class="fig">{"".join(parts)}</span>'


def _html_table(leaderboard: Leaderboard, marks: dict[int, int]) -> str:
    head = "".join(f"<th>{_h(b)}</th>" for b in leaderboard.benchmarks)
    rows = []
    for entry in leaderboard.entries:
        # Runs: the model, then the directory (full path on hover); references: the model, then the source.
        detail = Path(entry.detail).name if entry.kind == "run" else entry.detail.split(" (")[0]
        cells = []
        for benchmark in leaderboard.benchmarks:
            figures = entry.cell(benchmark)
            body = "".join(_html_figure(leaderboard, entry, f, marks) for f in figures) or '<span class="empty">–</span>'
            cells.append(f'<td data-benchmark="{_h(benchmark)}">{body}</td>')
        rows.append(f'<tr class="{entry.kind}"><td class="label"><span class="name">{_h(entry.model)}</span>'
                    f'<span class="detail" title="{_h(entry.detail)}">{_h(detail)}</span></td>{"".join(cells)}</tr>')
    return f'<div class="scroll"><table class="board"><thead><tr><th>model</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _chart(leaderboard: Leaderboard, benchmark: str, unit: str, index: int) -> str:
    """Horizontal bars, runs first then references by value; run CIs as whiskers; reference bars no run
    was measured like are hatched; runs with a differing reference in the column carry the mismatch mark."""
    bars = [(entry, figure) for entry in leaderboard.runs + leaderboard.references
            for figure in entry.cell(benchmark) if figure.unit == unit]
    if not bars:
        return ""
    runs = [bar for bar in bars if bar[0].kind == "run"]
    references = sorted((bar for bar in bars if bar[0].kind == "reference"), key=lambda bar: -bar[1].value)
    bars = runs + references
    step = 500 if unit == "rating" else 25
    top = 100 if unit != "rating" else step * math.ceil(max(f.value for _, f in bars) * 1.05 / step)
    label_w, plot_w, row_h, pad = 235, 280, 20, 22
    width, height = label_w + plot_w + 105, pad + row_h * len(bars) + 24
    scale = plot_w / top
    pattern = f"hatch{index}"
    out = [f'<svg class="bars" role="img" aria-label="{_h(benchmark)} ({unit})" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" font-family="system-ui,sans-serif" font-size="11">',
           f'<defs><pattern id="{pattern}" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
           f'<rect width="6" height="6" fill="#e4e7ec"/><line x1="0" y1="0" x2="0" y2="6" stroke="{REFERENCE_COLOR}" stroke-width="3"/></pattern></defs>']
    for tick in range(0, top + 1, step):
        x = label_w + tick * scale
        out.append(f'<line x1="{x:.1f}" y1="{pad - 6}" x2="{x:.1f}" y2="{height - 18}" stroke="#eceef2"/>'
                   f'<text x="{x:.1f}" y="{height - 6}" text-anchor="middle" fill="#6a7180">{tick}</text>')
    for row, (entry, figure) in enumerate(bars):
        y = pad + row * row_h
        width_bar = max(figure.value, 0) * scale
        is_run = entry.kind == "run"
        mismatched = leaderboard.mismatches(figure) if is_run else []
        hatched = not is_run and leaderboard.unmatched(figure)
        fill = RUN_COLOR if is_run else (f"url(#{pattern})" if hatched else REFERENCE_COLOR)
        kind = "run" if is_run else ("reference unmatched" if hatched else "reference")
        tip = f"{entry.label}: {figure.shown()}{_unit_text(figure)} · {figure.protocol.badge()}"
        if mismatched:
            tip += " · " + leaderboard.mismatch_text(entry, figure)
        elif hatched:
            tip += " · measured unlike every run in this column"
        # Charts have room for less: a run's model, task and the hash that ends its directory name.
        name = (f"{entry.model} · {figure.task} · {entry.detail.rsplit('_', 1)[-1][:6]}" if is_run
                else f"{entry.model} [{leaderboard.source_note(figure)}]")
        name = name if len(name) <= 32 else name[:31] + "…"  # references: the number tells two sources apart
        weight = ' font-weight="600"' if is_run else ""
        stroke = f' stroke="{REFERENCE_COLOR}"' if hatched else ""
        out.append(f'<g class="bar {kind}"><title>{_h(tip)}</title>'
                   f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end" fill="#1d2330"{weight}>{_h(name)}</text>'
                   f'<rect x="{label_w}" y="{y + 3}" width="{width_bar:.1f}" height="{row_h - 6}" rx="2" fill="{fill}"{stroke}/>')
        end = width_bar
        if figure.ci:
            low, high = (label_w + max(v, 0) * scale for v in figure.ci)
            mid = y + row_h / 2
            out.append(f'<path class="whisker" d="M{low:.1f} {mid:.1f}H{high:.1f}M{low:.1f} {mid - 4:.1f}V{mid + 4:.1f}'
                       f'M{high:.1f} {mid - 4:.1f}V{mid + 4:.1f}" stroke="#1d2330" stroke-width="1.2" fill="none"/>')
            end = max(end, high - label_w)
        value_text = figure.shown() + (f" {MISMATCH}" if mismatched else "")
        color = MISMATCH_COLOR if mismatched else "#1d2330"
        out.append(f'<text x="{label_w + end + 5:.1f}" y="{y + 13}" fill="{color}">{_h(value_text)}</text></g>')
    out.append("</svg>")
    title = benchmark if unit == "percent" else f"{benchmark} ({unit})"
    return f'<figure class="chart" data-benchmark="{_h(benchmark)}"><h3>{_h(title)}</h3>{"".join(out)}</figure>'


def render_html(leaderboard: Leaderboard) -> str:
    marks: dict[int, int] = {}
    table = _html_table(leaderboard, marks)
    charts = "".join(_chart(leaderboard, benchmark, unit, i * len(UNITS) + j)
                     for i, benchmark in enumerate(leaderboard.benchmarks) for j, unit in enumerate(UNITS))
    by_number = {number: key for key, number in marks.items()}
    figures = {id(f): (e, f) for e in leaderboard.runs for f in e.figures}
    mismatch_items = "".join(f'<li id="mis{n}">m{n}: {_h(leaderboard.mismatch_text(*figures[by_number[n]]))}</li>'
                             for n in sorted(by_number))
    source_items = "".join(f'<li id="src{n}" value="{n}">{_h(text)}</li>' for n, text in leaderboard.source_notes())
    contamination = "".join(f"<li>{_h(text)}</li>" for text in _contamination_notes(leaderboard))
    runs = len(leaderboard.runs)
    return "".join([
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>evalkit leaderboard</title><style>", CSS, "</style></head><body>",
        "<h1>evalkit leaderboard</h1>",
        f'<p class="lede">{runs} run{"s" if runs != 1 else ""} (blue rows: value and 95% CI in percent) beside published '
        "figures. Each number carries its protocol badge; published figures link to their source. "
        f'<span class="mismatch">{MISMATCH}</span> marks a run whose column holds figures measured another way '
        f'(hover, or see the notes below); <span class="contam">{CONTAMINATED}</span> marks a LiveCodeBench window '
        "that starts on or before the model's training cutoff.</p>",
        table,
        "<h2>Charts</h2>",
        '<p class="legend">Blue: runs, with 95% CI whiskers. Grey: published figures; hatched grey: measured '
        f"unlike every run in its column. Red “{MISMATCH}”: the run differs in protocol from some published figure "
        "beside it.</p>",
        f'<div class="charts">{charts}</div>',
        f'<h2>Protocol mismatches</h2><ul class="notes">{mismatch_items or "<li>none</li>"}</ul>' if runs else "",
        f'<h2>LiveCodeBench windows</h2><ul class="notes">{contamination}</ul>' if contamination else "",
        f'<h2>Sources</h2><ol class="notes">{source_items}</ol>',
        "</body></html>\n",
    ])
