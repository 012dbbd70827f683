import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/submissions.py
os.environ.setdefault("DLCOURSE_QUIET", "1")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
