"""Fixes to Jupyter Book 1's theme, so that pages load with a clean browser console.

- Jupyter Book always loads sphinx-thebe (live code), whose set-up script lands twice in every
  page ("Identifier 'THEBE_JS_URL' has already been declared") and points at a CDN. The course
  has no live code, so its scripts are left out of the pages.
- The theme's light/dark mode defaults to "" and its script logs "Got invalid theme mode" on a
  first visit; "auto" (follow the reader's system) is what it falls back to anyway.
- The redirecting index.html has no icon link, so browsers ask for /favicon.ico: the site's
  icon is copied there too.
"""
from __future__ import annotations

import shutil
from pathlib import Path


def _default_mode(app, config) -> None:
    context = dict(config.html_context or {})
    context.setdefault("default_mode", "auto")  # read by the theme's layout.html
    config.html_context = context


def _is_thebe(script) -> bool:
    body = str(getattr(script, "attributes", {}).get("body", ""))
    return "thebe" in str(getattr(script, "filename", script)).lower() or "THEBE_JS_URL" in body


def _drop_thebe(app, pagename, templatename, context, doctree) -> None:
    if "script_files" in context:
        context["script_files"] = [s for s in context["script_files"] if not _is_thebe(s)]


def _root_favicon(app, exception) -> None:
    icon = Path(app.outdir) / "_static" / Path(app.config.html_favicon or "").name
    if exception is None and app.builder.format == "html" and app.config.html_favicon and icon.is_file():
        shutil.copy2(icon, Path(app.outdir) / "favicon.ico")


def setup(app):
    app.connect("config-inited", _default_mode)
    app.connect("build-finished", _root_favicon)
    app.connect("html-page-context", _drop_thebe)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
