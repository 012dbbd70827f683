"""Serve MathJax with the site instead of from a CDN, so that math renders offline.

MathJax 3 comes from the PyPI package django-static-mathjax (pinned in requirements.txt);
only the TeX-to-CommonHTML bundle and its fonts are copied into _static/mathjax.
"""
from __future__ import annotations

import shutil
from pathlib import Path

BUNDLE = "tex-chtml.js"
FONTS = Path("output") / "chtml" / "fonts" / "woff-v2"


def _es5() -> Path:
    import mathjax  # the django-static-mathjax package

    return Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"


def _copy(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    src, dst = _es5(), Path(app.outdir) / "_static" / "mathjax"
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src / BUNDLE, dst / BUNDLE)
    shutil.copytree(src / FONTS, dst / FONTS, dirs_exist_ok=True)


def setup(app):
    if not (_es5() / BUNDLE).is_file():
        raise RuntimeError("MathJax not found: install the pinned requirements (django-static-mathjax)")
    app.config.mathjax_path = f"mathjax/{BUNDLE}"  # relative to _static
    app.connect("build-finished", _copy)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
