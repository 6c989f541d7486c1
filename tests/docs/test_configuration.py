"""Every environment variable the code reads is documented in docs/configuration.md, and every variable
the page's tables name is still read somewhere: the page cannot fall behind the code either way."""

from __future__ import annotations

import ast
import re

from tests.docs.runner import ROOT

PAGE = ROOT / "docs" / "configuration.md"
SOURCES = ["manage.py", "config", "chat", "profiles", "inventory", "bench", "tests"]
ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
ENV_METHODS = {"str", "int", "bool", "float", "list", "tuple", "dict", "json", "url", "db", "cache", "path"}
# The system's own, not a setting of this project.
NOT_SETTINGS = {"PATH", "HOME"}


def _is_os_environ(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ" and isinstance(node.value, ast.Name)


def _key(call_or_subscript: ast.AST) -> ast.AST | None:
    if isinstance(call_or_subscript, ast.Call):
        return call_or_subscript.args[0] if call_or_subscript.args else None
    if isinstance(call_or_subscript, ast.Subscript):
        return call_or_subscript.slice
    return None


def _reads(node: ast.AST) -> ast.AST | None:
    """The key node when `node` reads the environment: env.int("X"), env("X"), os.environ.get("X"),
    os.environ["X"] (not a store), os.environ.setdefault("X", …), os.getenv("X")."""
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Name) and func.id == "env":
            return _key(node)
        if isinstance(func, ast.Attribute):
            if func.attr in ENV_METHODS and isinstance(func.value, ast.Name) and func.value.id == "env":
                return _key(node)
            if func.attr in {"get", "setdefault"} and _is_os_environ(func.value):
                return _key(node)
            if func.attr == "getenv" and isinstance(func.value, ast.Name) and func.value.id == "os":
                return _key(node)
    if isinstance(node, ast.Subscript) and _is_os_environ(node.value) and isinstance(node.ctx, ast.Load):
        return _key(node)
    return None


def names_read(source: str, where: str = "<source>") -> set[str]:
    """The environment variables a module reads. A key that is not a literal stands for the upper-case
    string constants of its function (e.g. a loop over ("DEMO_USER_PASSWORD", …)); with none, fail."""
    tree = ast.parse(source)
    names: set[str] = set()
    scopes: list[ast.AST] = [
        tree,
        *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)),
    ]
    for scope in scopes:
        for node in ast.walk(scope):
            key = _reads(node)
            if key is None:
                continue
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                names.add(key.value)
            elif scope is not tree:
                candidates = {
                    c.value
                    for c in ast.walk(scope)
                    if isinstance(c, ast.Constant) and isinstance(c.value, str) and ENV_NAME.match(c.value)
                }
                line = getattr(node, "lineno", "?")
                assert candidates, f"{where}:{line}: reads a variable whose name this test cannot tell"
                names |= candidates
    return names


def makefile_names(text: str) -> set[str]:
    """`NAME ?= default` variables, and what recipes read from the environment (`$$NAME`, `$${NAME…}`)
    but do not set themselves (`SUDO=…; $$SUDO`)."""
    defaults = set(re.findall(r"^([A-Z][A-Z0-9_]*)\s*\?=", text, re.MULTILINE))
    shell_set = set(re.findall(r"(?:^|[\s;])([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))
    return defaults | (set(re.findall(r"\$\$\{?([A-Z][A-Z0-9_]*)", text)) - shell_set)


def code_names() -> dict[str, str]:
    """Every variable read, with one place that reads it."""
    found: dict[str, str] = {}
    for name in makefile_names((ROOT / "Makefile").read_text()):
        found.setdefault(name, "Makefile")
    for entry in SOURCES:
        path = ROOT / entry
        for file in [path] if path.is_file() else sorted(path.rglob("*.py")):
            if "migrations" in file.parts or ".venv" in file.parts:
                continue
            where = str(file.relative_to(ROOT))
            for name in names_read(file.read_text(encoding="utf-8"), where):
                found.setdefault(name, where)
    return {name: where for name, where in found.items() if name not in NOT_SETTINGS}


def documented(text: str) -> set[str]:
    return set(re.findall(r"`([A-Z][A-Z0-9_]*)`", text))


def table_names(text: str) -> set[str]:
    """The variables the page's tables list (first column)."""
    return {
        n for row in re.findall(r"^\| ([^|]*)\|", text, re.MULTILINE) for n in re.findall(r"`([A-Z][A-Z0-9_]*)`", row)
    }


def test_the_scanner_finds_settings_reads_of_every_form():
    source = """
import os
A = env.int("CHAT_NEW_LIMIT", default=3)
B = env("PLAIN")
C = os.environ.get("FROM_OS", "x")
D = os.environ["BY_INDEX"]
os.environ["WRITTEN_ONLY"] = "1"
def seed():
    for name, var in (("admin", "DEMO_X_PASSWORD"),):
        os.environ.get(var)
"""
    assert names_read(source) == {"CHAT_NEW_LIMIT", "PLAIN", "FROM_OS", "BY_INDEX", "DEMO_X_PASSWORD"}
    recipe = "PORT ?= 8000\nrun:\n\techo $${DEMO_PW:-x} $$CI; SUDO=sudo; $$SUDO true\n"
    assert makefile_names(recipe) == {"PORT", "DEMO_PW", "CI"}


def test_an_undocumented_variable_is_caught():
    page = PAGE.read_text(encoding="utf-8")
    assert "CHAT_NEW_LIMIT" in names_read('X = env.int("CHAT_NEW_LIMIT", default=3)')
    assert "CHAT_NEW_LIMIT" not in documented(page)


def test_every_variable_the_code_reads_is_in_configuration_md():
    missing = {name: where for name, where in code_names().items() if name not in documented(PAGE.read_text())}
    assert missing == {}, f"document these in docs/configuration.md: {missing}"


def test_every_variable_the_configuration_tables_list_is_read_by_the_code():
    stale = table_names(PAGE.read_text(encoding="utf-8")) - set(code_names())
    assert stale == set(), f"docs/configuration.md lists variables nothing reads: {stale}"
