"""`profiles` is the platform: apps plug into it, it never imports them. `chat/runtime` is plain Python:
no Django, no app (the apps hand it their names and tools as data)."""

import ast
import os
import re
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


def test_profiles_reads_no_setting_and_names_no_section_of_an_app():
    """Chat registers its engine defaults and override bounds (`definitions.register_engine_choice`):
    the platform reads none of chat's settings and names none of its step-settings sections."""
    from chat.engines import ENGINE_CHOICE

    app_settings = ("CHAT_", "OPENAI_", "ANTHROPIC_")
    sections = {ENGINE_CHOICE.section, *ENGINE_CHOICE.server_defaults()}
    assert "ai-chat" in sections  # the probe knows what to look for
    found = set()
    for path in PROFILES.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith(app_settings):
                found.add((path.name, node.attr))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.update((path.name, word) for word in sections | set(app_settings) if word in node.value)
    assert found == set()


# --------------------------------------------------------------------------- chat/runtime

RUNTIME = PROFILES.parent / "chat" / "runtime"
ROOT = PROFILES.parent
# Web-framework packages: the runtime is plain Python, driven by chat.turns / chat.consumers.
FRAMEWORKS = ("django", "channels", "rest_framework", "asgiref", "daphne", "drf_spectacular")
# The framework-free part of the platform that the runtime may use (no models, no settings).
PLATFORM_MODULES = {
    "profiles.definitions",
    "profiles.resolution",
    "profiles.overrides",
    "profiles.stacking",
    "profiles.validation",
    *(f"profiles.validation.{name}" for name in ("names", "text", "runtime", "content", "access")),
    "profiles.errors",
}


def runtime_files() -> list[Path]:
    files = sorted(RUNTIME.rglob("*.py"))
    assert len(files) >= 10  # the walk really read the package
    return files


def absolute_imports(path: Path) -> set[str]:
    """Every module `path` imports, relative imports resolved against its package."""
    package = list(path.relative_to(ROOT).with_suffix("").parts)[:-1]  # a module's (or __init__'s) package
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            name = ".".join([*base, *([node.module] if node.module else [])])
            modules.add(name)
            if not node.module:  # `from . import x`: x is a module of the package
                modules.update(f"{name}.{alias.name}" for alias in node.names)
    return modules


def test_chat_runtime_imports_neither_django_nor_the_apps():
    offenders = {}
    for path in runtime_files():
        bad = sorted(
            module
            for module in absolute_imports(path)
            if module.split(".")[0] in (*FRAMEWORKS, "inventory", "config")
            or (module.split(".")[0] == "chat" and not (module + ".").startswith("chat.runtime."))
            or (module.split(".")[0] == "profiles" and module not in PLATFORM_MODULES | {"profiles"})
        )
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    assert offenders == {}


def test_chat_runtime_loads_without_django_even_transitively():
    import subprocess
    import sys

    probe = (
        "import importlib, pkgutil, sys\n"
        "import chat.runtime\n"
        "for info in pkgutil.walk_packages(chat.runtime.__path__, 'chat.runtime.'):\n"
        "    importlib.import_module(info.name)\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.split()
    assert "chat.runtime.middlewares" in loaded and "chat.runtime.engines.openai" in loaded
    assert [m for m in loaded if m.split(".")[0] in (*FRAMEWORKS, "inventory", "config")] == []
    assert [m for m in loaded if m.startswith("chat.") and not m.startswith("chat.runtime")] == []
    assert {m for m in loaded if m.startswith("profiles.")} <= PLATFORM_MODULES


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def test_chat_runtime_code_names_no_app():
    """App names (`inventory`, `inventory_*` tools) reach the runtime as data (profiles, tool
    definitions), never as literals in its code. Docstrings and comments may mention them."""
    found = set()
    for path in runtime_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        skip = _docstrings(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in skip
                and re.search(r"inventory", node.value, re.I)
            ):
                found.add((str(path.relative_to(ROOT)), node.value.strip()))
    assert found == set(), "app names in chat/runtime code"
