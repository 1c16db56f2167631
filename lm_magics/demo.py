"""A corpus every Python installation has: the docstrings of standard-library modules.

Used by ``lm-magics demo`` (and handy in examples): one row per documented function or class.
"""

from __future__ import annotations

import importlib
import inspect
from typing import List, Sequence

__all__ = ["stdlib_docstrings", "DEMO_MODULES"]

DEMO_MODULES = ("textwrap", "string", "json", "shlex", "difflib", "statistics", "fractions", "calendar",
                "random", "heapq", "bisect", "functools", "base64", "glob", "fnmatch", "collections",
                "pathlib", "argparse", "csv", "datetime", "decimal", "email.message", "logging",
                "os", "re", "shutil", "subprocess", "tempfile", "threading", "typing", "urllib.parse",
                "zipfile", "itertools", "operator", "inspect", "contextlib", "dataclasses", "enum")


def stdlib_docstrings(modules: Sequence[str] = DEMO_MODULES) -> List[str]:
    """Docstrings (each on one line) of the public functions, classes and methods of these modules."""
    rows: List[str] = []
    for name in modules:
        try:
            mod = importlib.import_module(name)
        except ImportError:        # a trimmed Python build: skip what is not there
            continue
        for attr, obj in sorted(vars(mod).items()):
            if attr.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
                continue
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            members = [obj] + ([m for k, m in sorted(vars(obj).items()) if not k.startswith("_")
                                and inspect.isfunction(m)] if inspect.isclass(obj) else [])
            for m in members:
                doc = inspect.getdoc(m)
                if doc:
                    rows.append(" ".join(doc.split()))
    return rows
