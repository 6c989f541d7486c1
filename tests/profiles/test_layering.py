"""`profiles` is the platform: apps plug into it, it never imports them."""

import ast
from pathlib import Path

PROFILES = Path(__file__).resolve().parents[2] / "profiles"
APPS = ("chat", "inventory")


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def test_profiles_never_imports_the_apps_that_use_it():
    offenders = {
        str(path.relative_to(PROFILES.parent)): sorted(m for m in imported_modules(path) if m.split(".")[0] in APPS)
        for path in PROFILES.rglob("*.py")
    }
    assert {path: mods for path, mods in offenders.items() if mods} == {}
    assert len(offenders) > 10  # the walk really read the package
