"""The run report as one self-contained HTML page: sections of text, tables and PNG figures embedded as base64.

Each figure is also written as a PNG next to the page (``<stem>_png/``) for slides and papers; the page itself
needs nothing but its own file. No script, no external asset: it opens offline in any browser.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from Engineering.outputs.latent_figures import pyplot

CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 0 auto; max-width: 1100px;
       padding: 1.5em 2em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; border-bottom: 2px solid #4c72b0; padding-bottom: .3em; }
h2 { font-size: 1.25em; margin-top: 2em; color: #2b4a80; }
nav a { margin-right: 1em; font-size: .9em; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: .85em; color: #555; }
table { border-collapse: collapse; font-size: .85em; margin: .6em 0; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th { background: #eef2f8; }
td:first-child, th:first-child { text-align: left; }
p.note { color: #8a5a00; background: #fff7e0; padding: .4em .7em; border-left: 3px solid #e0a800; }
"""


@dataclass
class Figure:
    """A rendered figure: file name (``<name>.png``), PNG bytes and a caption."""

    name: str
    png: bytes
    caption: str


@dataclass
class Section:
    """One report section: an anchor id, a title, paragraphs, notes (missing inputs), tables and figures."""

    anchor: str
    title: str
    paragraphs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tables: list[pd.DataFrame] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)


def render_png(fig: Any, name: str, caption: str, dpi: int = 90) -> Figure:
    """A matplotlib figure as a :class:`Figure` (the figure is closed)."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        pyplot().close(fig)
    return Figure(name, buffer.getvalue(), caption)


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, border=0, float_format=lambda v: f"{v:.4g}", escape=True)


def _section(section: Section) -> str:
    parts = [f'<section id="{html.escape(section.anchor)}">', f"<h2>{html.escape(section.title)}</h2>"]
    parts += [f"<p>{html.escape(p)}</p>" for p in section.paragraphs]
    parts += [f'<p class="note">{html.escape(n)}</p>' for n in section.notes]
    parts += [_table(t) for t in section.tables]
    for fig in section.figures:
        data = base64.b64encode(fig.png).decode("ascii")
        parts.append(
            f'<figure><img alt="{html.escape(fig.caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(fig.caption)}</figcaption></figure>"
        )
    parts.append("</section>")
    return "\n".join(parts)


def render_html(title: str, sections: list[Section]) -> str:
    """The page: title, a table of contents, then every section."""
    nav = " ".join(f'<a href="#{html.escape(s.anchor)}">{html.escape(s.title)}</a>' for s in sections)
    body = "\n".join(_section(s) for s in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n<nav>{nav}</nav>\n{body}\n</body>\n</html>\n"
    )


def write_report_files(folder: Path, stem: str, title: str, sections: list[Section]) -> list[Path]:
    """Write ``<stem>.html`` and ``<stem>_png/<figure>.png`` into ``folder`` (the caller stages it)."""
    page = Path(folder) / f"{stem}.html"
    page.write_text(render_html(title, sections), encoding="utf-8")
    written = [page]
    pngs = Path(folder) / f"{stem}_png"
    pngs.mkdir(exist_ok=True)
    for fig in (f for s in sections for f in s.figures):
        (pngs / f"{fig.name}.png").write_bytes(fig.png)
        written.append(pngs / f"{fig.name}.png")
    return written


__all__ = ["Figure", "Section", "render_html", "render_png", "write_report_files"]
