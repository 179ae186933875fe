"""The package's layout: imports run one way, from the CLI down through the phases to the base."""

import ast
from pathlib import Path

import srgan_noise

PACKAGE = Path(srgan_noise.__file__).parent
# Lowest first: a module may import from its own phase or a phase below it.
PHASES = ("base", "models", "inference", "training", "evaluation", "comparison", "cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def phase_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) < 2 or parts[1] not in PHASES:  # srgan_noise, srgan_noise.cli, srgan_noise.__main__
        return "cli"
    return parts[1]


def imports() -> dict[str, set[str]]:
    """module -> the srgan_noise modules it imports (anywhere in it, lazily too)."""
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("srgan_noise"):
                targets.add(node.module)
            elif isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names if alias.name.startswith("srgan_noise")}
        graph[module_name(path)] = targets
    return graph


def test_every_phase_is_a_package_and_every_module_has_a_phase():
    assert {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").exists()} == set(PHASES) - {"cli"}
    loose = {path.stem for path in PACKAGE.glob("*.py")}
    assert loose == {"__init__", "__main__", "cli"}, "modules beside the CLI belong in a phase"


def test_no_phase_imports_a_phase_above_it():
    upward = [f"{source} -> {target}" for source, targets in imports().items() for target in targets
              if PHASES.index(phase_of(target)) > PHASES.index(phase_of(source))]
    assert upward == []


def test_imports_name_modules_not_phase_packages():
    """No re-export shims: `from srgan_noise.training import train` would hide where a name lives."""
    packages = {f"srgan_noise.{phase}" for phase in PHASES if phase != "cli"}
    assert [f"{s} -> {t}" for s, targets in imports().items() for t in targets if t in packages] == []


def test_no_import_circles():
    graph = imports()
    circles = []

    def visit(module: str, path: list[str]) -> None:
        for target in sorted(graph.get(module, ())):
            if target in path:
                circles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in done:
                visit(target, path + [target])
        done.add(module)

    done: set[str] = set()
    for module in sorted(graph):
        if module not in done:
            visit(module, [module])
    assert circles == []
