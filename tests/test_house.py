"""The shape of the house: no import cycles inside the packages, layers, no function longer than 80 lines,
lazy imports only where they put off a heavy library, and names spelled once."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("guided", "models", "search")
MAX_LINES = 80

#: Functions allowed past MAX_LINES, each with the reason it reads better whole. Keep this empty if you can.
LONG_FUNCTIONS_ALLOWED: dict[str, str] = {}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


def imports(name: str, path: Path, mods: dict[str, Path]) -> list[tuple[str, bool, int]]:
    """(what, lazy, line) for every import in a module: a package module's name, or an outside library's
    top-level name; ``lazy`` where the import sits inside a function."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    inside = {
        id(x) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef) for x in ast.walk(f)
    }
    found = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
        for t in targets:
            own = t
            while own and own not in mods:
                own = own.rpartition(".")[0]
            if own != name:
                found.append((own or t.partition(".")[0], id(node) in inside, node.lineno))
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (at any depth of its code, lazy imports included)."""
    mods = modules()
    return {m: {t for t, _, _ in imports(m, path, mods) if t in mods} for m, path in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle found by depth-first search (each reported once)."""
    found, seen = [], set()

    def walk(node: str, path: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in path:
                cycle = path[path.index(nxt) :]
                if frozenset(cycle) not in seen:
                    seen.add(frozenset(cycle))
                    found.append(cycle + [nxt])
            elif len(path) < 8:
                walk(nxt, path + [nxt])

    for start in sorted(graph):
        walk(start, [start])
    return found


def test_no_import_cycles():
    assert cycles(import_graph()) == []  # a submodule importing its own package's __init__ counts too


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_function_is_longer_than_80_lines():
    long = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                where = f"{name}.{node.name}"
                if length > MAX_LINES and where not in LONG_FUNCTIONS_ALLOWED:
                    long.append(f"{where}: {length} lines")
    assert long == []


#: Libraries slow to import or optional: a function may import a package module lazily only to put off one
#: of these (`lazy_imports_that_put_off_nothing`).
HEAVY = {"torch", "torchvision", "matplotlib", "optuna", "pandas", "scipy", "ray", "onnx", "onnxruntime", "psycopg"}


def lazy_imports_that_put_off_nothing(mods: dict[str, Path]) -> list[str]:
    """``module:line target`` for every import of a package module inside a function whose target loads no
    `HEAVY` library that the importing module does not load already: it belongs at the top of the file."""
    found = {m: imports(m, path, mods) for m, path in mods.items()}

    def loads(module: str, seen: set[str]) -> set[str]:
        """Outside libraries a module loads at import: its own top-level imports', its packages' and theirs."""
        if module in seen:
            return set()
        seen.add(module)
        parents = [".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)]
        out = set()
        for t, lazy, _ in found.get(module, []):
            if not lazy:
                out |= loads(t, seen) if t in mods else {t}
        return out.union(*(loads(p, seen) for p in parents if p in mods))

    return [
        f"{m}:{line} {t}"
        for m, rows in found.items()
        for t, lazy, line in rows
        if lazy and t in mods and not (loads(t, set()) - loads(m, set())) & HEAVY
    ]


def test_functions_import_package_modules_lazily_only_to_put_off_a_heavy_library():
    assert lazy_imports_that_put_off_nothing(modules()) == []


def test_the_lazy_import_rule_catches_one_that_puts_off_nothing(tmp_path):
    (tmp_path / "light.py").write_text("import json\n")
    (tmp_path / "heavy.py").write_text("import torch\n")
    (tmp_path / "user.py").write_text("def f():\n    import light\n    import heavy\n")
    mods = {m: tmp_path / f"{m}.py" for m in ("light", "heavy", "user")}
    assert lazy_imports_that_put_off_nothing(mods) == ["user:2 light"]


#: The layers of the house, lowest first (README "How the code is laid out"): a module may import its own
#: layer and those below, never one above.
LAYERS = (
    ("models", lambda m: m == "models" or m.startswith("models.")),
    (
        "guided core",
        lambda m: (
            m.startswith("guided")
            and not m.startswith(("guided.pipeline", "guided.commands"))
            and m not in ("guided.cli", "guided.quickstart", "guided.clidoc", "guided.__main__")
        ),
    ),
    ("search", lambda m: m == "search" or m.startswith("search.")),
    ("guided.pipeline", lambda m: m == "guided.pipeline" or m.startswith("guided.pipeline.")),
    ("the command line", lambda m: True),
)


def layer(module: str) -> int:
    return next(i for i, (_, inside) in enumerate(LAYERS) if inside(module))


def test_no_module_imports_a_layer_above_its_own():
    upward = [
        f"{m} ({LAYERS[layer(m)][0]}) imports {t} ({LAYERS[layer(t)][0]})"
        for m, targets in import_graph().items()
        for t in targets
        if layer(t) > layer(m)
    ]
    assert upward == []


def test_the_layer_rule_catches_an_upward_import():
    assert (
        layer("models.spec") < layer("guided.training.train") < layer("search.study") < layer("guided.pipeline.runner")
    )
    assert layer("guided.pipeline.runner") < layer("guided.commands.studies") == layer("guided.cli")


def folder_file_names() -> set[str]:
    """Every file name `guided.storage.folders` owns: its module constants and what its path properties return."""
    import guided.storage.folders as folders

    names = {v for k, v in vars(folders).items() if k.isupper() and isinstance(v, str)}
    for kind in (folders.RunFolder, folders.PrunedFolder, folders.StageFolder, folders.SearchFolder):
        for attr, value in vars(kind).items():
            if isinstance(value, property):
                names.add(getattr(kind("/x"), attr).name)
            elif attr.isupper() and isinstance(value, str):
                names.add(value)
    for attr, value in vars(folders.StudyFolder).items():
        if isinstance(value, property):
            names.add(getattr(folders.StudyFolder("/x"), attr).name)
    return {n for n in names if "." in n}  # files, not folders (``stages``, ``latency``)


def test_each_run_folder_file_name_is_spelled_once():
    """A folder's file names live in `guided.storage.folders` only: no other module spells ``"result.json"``."""
    names = folder_file_names()
    assert {"spec.json", "result.json", "prune.json", "stage.json", "done.json", "pattern.json"} <= names
    spelled: dict[str, list[str]] = {n: [] for n in names}
    for module, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in spelled:
                spelled[node.value].append(module)
    assert {n: where for n, where in spelled.items() if len(where) != 1} == {}


def vocabulary_spelled_outside(definition: str, names: set[str], role_names: set[str]) -> list[str]:
    """``module:line name`` for every string constant (docstrings aside) in ``names`` outside the module
    ``definition``, and every comparison, dict entry or keyword argument that pairs a role with a literal in
    ``role_names`` (``tags.role == "base"``, ``{"role": "base"}``, ``Tags(role="base")``): those read
    `guided.pipeline.roles`."""
    found = []
    for module, path in modules().items():
        if module == definition:
            continue
        tree = ast.parse(path.read_text())
        docs = {
            id(n.body[0].value)
            for n in ast.walk(tree)
            if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and ast.get_docstring(n) is not None
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in names and id(node) not in docs:
                found.append(f"{module}:{node.lineno} {node.value}")
            pairs = []
            if isinstance(node, ast.Dict):
                pairs = list(zip(node.keys, node.values))
            elif isinstance(node, ast.Compare) and _is_role(node.left):
                pairs = [(node.left, c) for c in node.comparators]
            elif isinstance(node, ast.Call):
                pairs = [(ast.Constant("role"), k.value) for k in node.keywords if k.arg == "role"]
            for key, value in pairs:
                literals = value.elts if isinstance(value, ast.Tuple | ast.List | ast.Set) else [value]
                for lit in literals:
                    if _is_role(key) and isinstance(lit, ast.Constant) and lit.value in role_names:
                        found.append(f"{module}:{lit.lineno} role {lit.value}")
    return found


def _is_role(node) -> bool:
    """``"role"``, ``x.role``, ``x["role"]`` or ``x.get("role")``."""
    if isinstance(node, ast.Attribute):
        return node.attr == "role"
    if isinstance(node, ast.Constant):
        return node.value == "role"
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and node.slice.value == "role"
    if isinstance(node, ast.Call) and node.args:
        return isinstance(node.args[0], ast.Constant) and node.args[0].value == "role"
    return False


def test_roles_and_search_arms_are_spelled_in_their_definition_only():
    """Stage roles and search-arm names live in `guided.pipeline.roles`: the distinctive names (``scratch``,
    ``search-best``, ``cold``, ``search-cold``, ...) appear nowhere else, and no ``"role"`` is compared with
    or set to a literal."""
    from guided.pipeline.roles import SEARCH_ARMS, Role

    roles = {r.value for r in Role}
    distinctive = {r for r in roles if "-" in r or r == "scratch"}
    arms = {a.name for a in SEARCH_ARMS.values() if a.name != a.sampler} | {a.label for a in SEARCH_ARMS.values()}
    assert {"scratch", "search-best", "cold", "seeded", "search-random"} <= distinctive | arms
    assert vocabulary_spelled_outside("guided.pipeline.roles", distinctive | arms, roles) == []


def test_the_vocabulary_rule_catches_a_spelled_role(tmp_path, monkeypatch):
    bad = tmp_path / "bad.py"
    bad.write_text(
        'def f(s):\n    return s.tags.get("role") in ("base", "x") or {"role": "report"} or "cold"\n'
        'def g(s):\n    return s.tags.role == "report" or Tags(role="base")\n'
    )
    monkeypatch.setitem(globals(), "modules", lambda: {"bad": bad})
    found = vocabulary_spelled_outside("guided.pipeline.roles", {"cold"}, {"base", "report"})
    assert sorted(found) == [
        "bad:2 cold",
        "bad:2 role base",
        "bad:2 role report",
        "bad:4 role base",
        "bad:4 role report",
    ]
