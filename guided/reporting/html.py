"""A report's Markdown as one self-contained HTML page (Python-Markdown renders; images are inlined)."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

__all__ = ["html_page"]

_MIME = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
_STYLE = (
    "body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em}img{max-width:100%}"
)


def html_page(markdown_text: str, base: str | Path, *, title: str) -> str:
    """A self-contained HTML page from Markdown: tables, lists, emphasis, code, and images.

    Raw HTML in ``markdown_text`` is escaped, not rendered. Images with a relative path
    (``![alt](figures/x.png)``, resolved against ``base``) are embedded as base64 data, so the page can be
    mailed or attached on its own.

    Example:
        >>> "<td>1</td>" in html_page("| a |\\n| --- |\\n| 1 |", ".", title="t")
        True
        >>> "<script>" in html_page("# <script>alert(1)</script>", ".", title="<script>")
        False
    """
    import markdown

    md = markdown.Markdown(extensions=["tables"], output_format="html")
    # Raw HTML in the text is shown as text, never passed through: a report holds what users wrote (a title,
    # names, paths), and a page that ran it would be a page that runs their strings.
    md.preprocessors.deregister("html_block")
    md.inlinePatterns.deregister("html")
    body = md.convert(markdown_text)
    base = Path(base)

    def inline(match: re.Match) -> str:
        src = html.unescape(match.group(1))
        path = base / src
        if "://" in src or src.startswith("data:") or not path.is_file():
            return match.group(0)
        data = base64.b64encode(path.read_bytes()).decode()
        return f'src="data:{_MIME.get(path.suffix.lower(), "application/octet-stream")};base64,{data}"'

    body = re.sub(r'src="([^"]+)"', inline, body)
    body = re.sub(r'(href|src)="\s*(?:javascript|vbscript):[^"]*"', r'\1="#"', body, flags=re.IGNORECASE)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{body}</body></html>\n"
    )
