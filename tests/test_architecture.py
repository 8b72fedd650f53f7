"""The package's import graph stays a tree, every module imports alone, and
the house keeps its shape (docs/architecture.md): small modules and
functions, backend questions in one package, a test file per module.

The graph is read from the source (a small AST walk): every `import` and
`from ... import` of a `lossguard` module counts, inside functions too (a lazy
import is still an arrow). An import cycle, an arrow from the data layer
(`glove`, `diagnosis`) up to the callbacks, or a private name imported from
another module fails here with the path that shows it.
"""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lossguard"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {
    _module_name(path): path
    for path in sorted(PACKAGE.rglob("*.py"))
    if "__pycache__" not in path.parts
}


def _imports(path: Path):
    """(module imported, names taken from it) for each import in the file."""
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0]
                base = f"{anchor}.{base}" if base else anchor
            names = tuple(alias.name for alias in node.names)
            submodules = [f"{base}.{n}" for n in names if f"{base}.{n}" in MODULES]
            yield from ((sub, ()) for sub in submodules)
            rest = tuple(n for n in names if f"{base}.{n}" not in MODULES)
            if rest or not submodules:
                yield base, rest


def graph() -> dict[str, set[str]]:
    edges = {}
    for name, path in MODULES.items():
        edges[name] = {
            target
            for target, _ in _imports(path)
            if target in MODULES and target != name
        }
    return edges


def find_cycle(edges):
    """One import cycle as a list of modules, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_the_package():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _reaches(edges, start):
    seen, todo = set(), [start]
    while todo:
        for nxt in edges[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


@pytest.mark.parametrize(
    "lower, upper",
    [
        ("lossguard.glove", "lossguard.diagnosis"),
        ("lossguard.glove", "lossguard.callbacks"),
        ("lossguard.diagnosis", "lossguard.callbacks"),
        ("lossguard.diagnosis", "lossguard.metrics"),
        ("lossguard.diagnosis.registry", "lossguard.diagnosis.faults"),
        ("lossguard.diagnosis.statistics", "lossguard.diagnosis.faults"),
        ("lossguard.diagnosis.statistics", "lossguard.diagnosis.collect"),
        ("lossguard.backends", "lossguard.diagnosis"),
        ("lossguard.backends", "lossguard.callbacks"),
        ("lossguard.kinds", "lossguard.diagnosis"),
        # The callback's pieces never import the callback back.
        ("lossguard.callbacks.instrument", "lossguard.callbacks.loss_sanity"),
        ("lossguard.callbacks.reader", "lossguard.callbacks.loss_sanity"),
        ("lossguard.callbacks.ledger", "lossguard.callbacks.loss_sanity"),
        ("lossguard.callbacks.sinks", "lossguard.callbacks.loss_sanity"),
        ("lossguard.callbacks.start", "lossguard.callbacks.loss_sanity"),
        ("lossguard.callbacks.state", "lossguard.callbacks.loss_sanity"),
    ],
)
def test_no_arrow_back_up(lower, upper):
    edges = graph()
    for module in (m for m in edges if m == lower or m.startswith(lower + ".")):
        bad = sorted(
            m
            for m in _reaches(edges, module)
            if m == upper or m.startswith(upper + ".")
        )
        assert not bad, f"{module} imports {bad} (directly or through others)"


def test_no_private_name_is_imported_from_another_module():
    private = [
        f"{name}: {target}.{imported}"
        for name, path in MODULES.items()
        for target, names in _imports(path)
        if target.startswith("lossguard") and target != name
        for imported in names
        if imported.startswith("_") and not imported.startswith("__")
    ]
    assert private == []


#: Imports each module named in argv in a fork of one interpreter that has
#: loaded only the third-party packages (Keras and its backend take seconds
#: to import; lossguard's own modules are what is tested, each in a process
#: where no other lossguard module was imported). Prints a module that fails
#: with its traceback.
_ALONE = r"""
import importlib, os, sys, traceback
import keras, numpy, pandas
for name in sys.argv[1:]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            importlib.import_module(name)
            os._exit(0)
        except BaseException:
            os.write(write, traceback.format_exc()[-1500:].encode())
            os._exit(1)
    os.close(write)
    with os.fdopen(read) as pipe:
        error = pipe.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or "lossguard" in sys.modules:
        print(f"FAILED {name} (status {status}):\n{error}", flush=True)
"""


def test_every_module_imports_on_its_own_in_a_fresh_interpreter():
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork (one interpreter per module is too slow)")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-c", _ALONE, *sorted(MODULES)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "FAILED" not in done.stdout, done.stdout


#: The limits docs/architecture.md promises.
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
SOURCES = {**MODULES, "lossguard_cli": PACKAGE.parent / "lossguard_cli.py"}


def test_no_module_over_500_lines():
    long = {
        name: n
        for name, path in SOURCES.items()
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}, f"split these by job: {long}"


def test_no_function_over_60_lines():
    """Counted from `def` to the last line, docstring included."""
    long = {}
    for name, path in SOURCES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long[f"{name}.{node.name}"] = n
    assert long == {}, f"split these: {long}"


def _asks_for_the_backend(path: Path) -> list[int]:
    """Lines that ask Keras which backend runs (`keras.backend.backend()`,
    `keras.config.backend()`, or `backend` imported from `keras.backend`)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "backend":
                if isinstance(func.value, ast.Attribute | ast.Name):
                    base = ast.unparse(func.value)
                    # keras.backend.backend(), keras.config.backend()
                    if base.endswith("backend") or base.endswith("config"):
                        lines.append(node.lineno)
        if isinstance(node, ast.ImportFrom) and node.module == "keras.backend":
            if any(alias.name == "backend" for alias in node.names):
                lines.append(node.lineno)
    return lines


def test_the_asker_finds_a_backend_question(tmp_path):
    probe = tmp_path / "question.py"
    probe.write_text(
        "import keras\nfrom keras.backend import backend\n"
        "X = keras.backend.backend() == 'jax'\n"
        "Y = keras.config.backend()\n"
    )
    assert sorted(_asks_for_the_backend(probe)) == [2, 3, 4]


def test_no_backend_question_outside_backends_and_keras_compat():
    allowed = ("lossguard.backends", "lossguard.keras_compat")
    asked = {
        name: lines
        for name, path in SOURCES.items()
        if not name.startswith(allowed) and (lines := _asks_for_the_backend(path))
    }
    assert asked == {}, f"ask lossguard.backends instead: {asked}"


@pytest.mark.parametrize("package", ["diagnosis", "callbacks"])
def test_every_module_of_diagnosis_and_callbacks_has_its_test_file(package):
    """tests/<package>/test_<module>.py for each module (a subpackage counts
    as one module)."""
    tests = PACKAGE.parent / "tests" / package
    children = sorted(
        path.stem if path.is_file() else path.name
        for path in (PACKAGE / package).iterdir()
        if (path.suffix == ".py" and path.stem != "__init__")
        or (path.is_dir() and (path / "__init__.py").exists())
    )
    missing = [name for name in children if not (tests / f"test_{name}.py").exists()]
    assert missing == [], f"no tests/{package}/test_<module>.py for {missing}"


def test_the_callbacks_pieces_set_every_attribute_in_init():
    """A reader of a class in callbacks/ finds all its state in __init__."""
    late = {}
    for path in sorted((PACKAGE / "callbacks").glob("*.py")):
        for cls in ast.parse(path.read_text()).body:
            if not isinstance(cls, ast.ClassDef):
                continue
            stored = {}
            for method in cls.body:
                if not isinstance(method, ast.FunctionDef):
                    continue
                for node in ast.walk(method):
                    if (
                        isinstance(node, ast.Attribute)
                        and isinstance(node.ctx, ast.Store)
                        and isinstance(node.value, ast.Name)
                        and node.value.id == "self"
                    ):
                        stored.setdefault(node.attr, set()).add(method.name)
            first_set_later = sorted(
                a for a, m in stored.items() if "__init__" not in m
            )
            if first_set_later:
                late[f"{path.stem}.{cls.name}"] = first_set_later
    assert late == {}
