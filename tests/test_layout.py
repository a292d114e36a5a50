"""The shape of the house: no import cycles between the library's modules and packages."""
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


def cycles(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    def reach(a: str) -> set[str]:
        seen, todo = set(), [a]
        while todo:
            for b in edges.get(todo.pop(), ()):
                if b not in seen:
                    seen.add(b)
                    todo.append(b)
        return seen

    return sorted((a, b) for a in edges for b in edges[a] if a in reach(b))


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [("a", "b"), ("b", "c"), ("c", "a")]
