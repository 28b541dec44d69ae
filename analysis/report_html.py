"""report/index.html: one self-contained page (pictures inline as base64 PNG, no script, no
file or server needed beside it). Torch-free, matplotlib-free.

    text = page("EM-MIL report", [Section("mAP", "caption", images=[("map.png", png)])])
"""
import base64
import html
from dataclasses import dataclass, field

STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 1em auto; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; border-bottom: 1px solid #ccc; }
p.caption { color: #444; font-size: 0.92em; }
img { max-width: 100%; display: block; margin: 0.4em 0 1em; }
table { border-collapse: collapse; font-size: 0.88em; margin: 0.5em 0 1em; }
td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
"""


@dataclass
class Section:
    title: str
    caption: str
    images: list = field(default_factory=list)   # [(file name, PNG bytes)]
    table: list = None                           # [[header...], [row...], ...] or None


def image_tag(name, png):
    """An <img> holding the PNG itself (a data: URI); alt = the file name beside it."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'


def table_html(rows):
    head, *body = rows
    cells = "".join(f"<th>{html.escape(str(c))}</th>" for c in head)
    lines = [f"<tr>{cells}</tr>"]
    lines += ["<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
              for row in body]
    return "<table>" + "".join(lines) + "</table>"


def page(title, sections, intro=""):
    """The whole page as text: a title, an introduction, then each section (heading, caption,
    optional table, its pictures)."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    if intro:
        parts.append(f'<p class="caption">{html.escape(intro)}</p>')
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        parts.append(f'<p class="caption">{html.escape(s.caption)}</p>')
        if s.table:
            parts.append(table_html(s.table))
        parts += [image_tag(name, png) for name, png in s.images]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
