"""The shape of the house: no import cycles between the library's modules, nor between its packages; the rooms
that must not reach into the trainers do not."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def unit(module: str) -> str | None:
    """The unit a module belongs to: ``search_spaces``, or ``nas_kd.X`` for a module or package X of nas_kd."""
    parts = module.split(".")
    if parts[0] == "search_spaces":
        return "search_spaces"
    if parts[0] != "nas_kd":
        return None
    return "nas_kd" if len(parts) == 1 else f"nas_kd.{parts[1]}"


def import_graph() -> dict[str, set[str]]:
    """unit -> units it imports (top-level and function-level imports alike)."""
    edges: dict[str, set[str]] = {}
    for f in [*ROOT.glob("nas_kd/**/*.py"), *ROOT.glob("search_spaces/*.py")]:
        mod = ".".join(f.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        src = unit(mod)
        for node in ast.walk(ast.parse(f.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
            for n in names:
                dst = unit(n)
                if dst and dst != src:
                    edges.setdefault(src, set()).add(dst)
    return edges


def module_graph() -> dict[str, set[str]]:
    """module -> modules it imports, top-level and function-level imports alike (a lazy import is still an
    edge); ``from package import submodule`` is an edge to the submodule, other names to the module they are in."""
    files = [*ROOT.glob("nas_kd/**/*.py"), *ROOT.glob("search_spaces/*.py")]
    mods = {".".join(f.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): f for f in files}
    edges: dict[str, set[str]] = {}
    for mod, f in mods.items():
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods else node.module
                           for a in node.names]
            else:
                continue
            for t in targets:
                while t not in mods and "." in t:
                    t = t.rsplit(".", 1)[0]
                if t in mods and t != mod:
                    edges.setdefault(mod, set()).add(t)
    return edges


def reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for b in edges.get(todo.pop(), ()):
            if b not in seen:
                seen.add(b)
                todo.append(b)
    return seen


def cycles(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((a, b) for a in edges for b in edges[a] if a in reachable(edges, b))


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_no_import_cycles_between_modules():
    edges = module_graph()
    assert len(edges) > 50  # the graph was read
    assert cycles(edges) == []


def test_evaluators_search_and_data_reach_nothing_of_the_trainers():
    edges = module_graph()
    wrong = sorted((a, b) for a in edges if a.startswith(("nas_kd.evaluators", "nas_kd.search", "nas_kd.data"))
                   for b in reachable(edges, a) if b.startswith(("nas_kd.train", "nas_kd.pipeline", "nas_kd.cli")))
    assert wrong == []
    assert "nas_kd.train.loop" in reachable(edges, "nas_kd.pipeline")  # the check sees transitive imports
    assert not [b for b in reachable(edges, "nas_kd.data") if b.startswith("search_spaces")]  # data knows no spaces


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [("a", "b"), ("b", "c"), ("c", "a")]


def test_the_renderers_and_statistics_sit_low_and_the_report_reaches_no_producer():
    """One renderer per result (nas_kd.results) and one statistics module (nas_kd.stats), used by the producers and
    by ``nas-kd report`` alike: they reach nothing but each other, and the report reaches no bench."""
    edges = module_graph()
    low = {m for m in edges if m == "nas_kd.stats" or m.startswith("nas_kd.results")}
    assert "nas_kd.results.distill" in edges and "nas_kd.stats" in reachable(edges, "nas_kd.results.distill")
    for m in low:
        assert reachable(edges, m) <= {"nas_kd.stats", "nas_kd.results"} | low, m
    assert not [m for m in reachable(edges, "nas_kd.report") if m.startswith("nas_kd.bench")]
