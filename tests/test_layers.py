"""The package's layers hold: the engine imports nothing above config and errors, and no module imports
another that (directly or not) imports it back. Every import counts: module level, inside functions and
under TYPE_CHECKING."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "lm_magics"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set:
    """The lm_magics modules that ``path`` imports, anywhere in the file."""
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = [f"{target}.{a.name}" for a in node.names if _exists(f"{target}.{a.name}")]
            # `from . import api` imports the submodule; `from lm_magics import train` runs the package.
            candidates = subs if len(subs) == len(node.names) else [target] + subs
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        for c in candidates:
            if c.startswith("lm_magics") and _exists(c) and c != me:
                found.add(c)
    return found


def _exists(module: str) -> bool:
    rel = Path(*module.split("."))
    return (PKG.parent / rel).with_suffix(".py").exists() or (PKG.parent / rel / "__init__.py").exists()


def _graph() -> dict:
    return {_module_name(p): _imports(p) for p in PKG.rglob("*.py")}


def test_the_engine_imports_only_config_and_errors_from_the_package():
    graph = _graph()
    for mod, deps in graph.items():
        if mod.startswith("lm_magics.engine"):
            above = {d for d in deps if not d.startswith("lm_magics.engine")} - {"lm_magics.config",
                                                                                 "lm_magics.errors"}
            assert not above, f"{mod} imports {sorted(above)}"


def test_no_import_cycles():
    graph = _graph()
    edges = graph
    cycles = []

    def visit(node, stack, on_stack, done):
        on_stack.add(node)
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt in on_stack:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in done:
                visit(nxt, stack, on_stack, done)
        stack.pop()
        on_stack.discard(node)
        done.add(node)

    done: set = set()
    for start in sorted(edges):
        if start not in done:
            visit(start, [], set(), done)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


_FRONT_ENDS = ("lm_magics.magics", "lm_magics.cli", "lm_magics.dask", "lm_magics.spark", "lm_magics.widgets",
               "lm_magics.assistant")


def _is_front_end(mod: str) -> bool:
    return any(mod == f or mod.startswith(f + ".") for f in _FRONT_ENDS)


def test_the_analysis_layer_sits_between_the_api_and_the_front_ends():
    """front-ends -> analysis -> api -> engine: the API imports neither the analysis layer nor a front-end,
    the analysis layer imports no front-end, and scoring, explaining and comparing live in analysis."""
    graph = _graph()
    assert "lm_magics.analysis" in graph
    assert not {d for d in graph["lm_magics.api"] if d == "lm_magics.analysis" or _is_front_end(d)}
    assert "lm_magics.api" in graph["lm_magics.analysis"]
    assert not [d for d in graph["lm_magics.analysis"] if _is_front_end(d) or d == "lm_magics.registry"]
    for front in ("lm_magics.magics", "lm_magics.assistant.answers", "lm_magics.dask", "lm_magics.cli"):
        assert "lm_magics.analysis" in graph[front], f"{front} does not call the analysis layer"
    api_defs = {n.name for n in ast.parse((PKG / "api.py").read_text()).body if isinstance(n, ast.FunctionDef)}
    assert not api_defs & {"score_frame", "explain", "compare_groups"}
    import lm_magics

    assert lm_magics.score_frame.__module__ == "lm_magics.analysis"
    assert lm_magics.explain.__module__ == lm_magics.compare_groups.__module__ == "lm_magics.analysis"


def _third_party(path: Path) -> set:
    """The top-level names of the modules outside the package that ``path`` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
    return found - {"lm_magics"}


def test_the_assistant_grammar_and_answers_need_no_widgets():
    # The chat's grammar and answers are plain modules: a test (or a script) uses them without ipywidgets.
    for path in (PKG / "assistant").glob("*.py"):
        mod = _module_name(path)
        assert "ipywidgets" not in _third_party(path), mod
        assert not {d for d in _imports(path) if d.startswith("lm_magics.widgets")}, mod


def test_the_assistant_runs_with_ipywidgets_unimportable(tmp_path):
    import subprocess
    import sys

    script = (
        "import sys\n"
        "sys.modules['ipywidgets'] = None          # any import of it fails\n"
        "from lm_magics.assistant import answers, grammar\n"
        "assert grammar.split_command('/unusual df.text top 2') == ('unusual', 'df.text top 2')\n"
        "line = answers.magic_line('lm_score', {'df': 'df', 'column': 'text', 'overwrite': True, 'top': 2})\n"
        "assert line == '%lm_score --df df --column text --overwrite --top 2', line\n"
        "assert 'ipywidgets' not in sys.modules or sys.modules['ipywidgets'] is None\n"
        "assert not [m for m in sys.modules if m.startswith('lm_magics.widgets')]\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=PKG.parent)
    assert done.returncode == 0, done.stderr


def test_no_module_imports_another_modules_underscored_names():
    """Modules use what another module exports for them (its public names), never its underscored ones:
    a private name may change without a look at who else uses it."""
    found = []
    for path in PKG.rglob("*.py"):
        me = _module_name(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or node.module == "__future__":
                continue
            if not node.level and not (node.module or "").startswith("lm_magics"):
                continue              # third-party modules are not ours to judge here
            for a in node.names:
                if a.name.startswith("_") and not a.name.startswith("__"):
                    found.append(f"{me} imports {a.name} from {'.' * node.level}{node.module or ''}")
    assert not found, "; ".join(found)
