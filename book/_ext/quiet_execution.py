"""Pages are executed without progress bars, however the book is built.

`make book` exports DLCOURSE_QUIET=1 already; a bare `jupyter-book build .` would otherwise
print tqdm bars into every page (and into the execution cache). The kernels that execute the
pages inherit this process's environment.
"""
from __future__ import annotations

import os


def setup(app):
    os.environ["DLCOURSE_QUIET"] = "1"
    return {"parallel_read_safe": True, "parallel_write_safe": True}
