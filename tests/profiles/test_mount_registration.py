"""Mounts are registered by their apps' `AppConfig.ready()`: `get_mount()` works as soon as Django is set
up (a shell, a management command, a worker), not only once something imported `config.urls`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.apps import apps
from django.urls import reverse

from profiles.mounts import Mount, get_mount, register_mount

BASE_DIR = Path(__file__).resolve().parents[2]
EXPECTED = {
    "chat": {"prefix": "", "default_registry": "default", "path": "/"},
    "inventory": {"prefix": "inventory/", "default_registry": "inventory", "path": "/inventory/"},
}
# Prints the mounts as JSON, and which project modules that could register them as a side effect
# (the URL root, the ASGI application) had been imported when it asked.
PROBE = """
import json, sys
from profiles.mounts import get_mount
mounts = {
    name: {"prefix": m.prefix, "default_registry": m.default_registry, "path": m.path}
    for name in ("chat", "inventory")
    for m in [get_mount(name)]
}
loaded = sorted(m for m in ("config.urls", "config.asgi") if m in sys.modules)
print("PROBE " + json.dumps({"mounts": mounts, "loaded": loaded}))
"""


def _env() -> dict[str, str]:
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "PYTHONPATH": str(BASE_DIR)}


def _probe(args: list[str]) -> dict:
    result = subprocess.run(
        [sys.executable, *args], cwd=BASE_DIR, env=_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.startswith("PROBE ")]
    return json.loads(line.removeprefix("PROBE "))


def test_a_fresh_process_finds_both_mounts_after_django_setup_without_the_url_root():
    found = _probe(["-c", "import django\ndjango.setup()\n" + PROBE])
    assert found == {"mounts": EXPECTED, "loaded": []}


def test_a_management_command_finds_both_mounts():
    found = _probe(["manage.py", "shell", "--no-imports", "-c", PROBE])
    assert found["mounts"] == EXPECTED
    assert "config.urls" not in found["loaded"]


def test_registration_is_idempotent_and_the_urls_use_the_registered_mounts():
    from chat.mounts import CHAT_MOUNT
    from inventory.mounts import INVENTORY_MOUNT
    from profiles.mounts import registered_mounts

    before = registered_mounts()
    apps.get_app_config("chat").ready()  # ready() may run again (tests, autoreloaders)
    apps.get_app_config("inventory").ready()
    assert register_mount(Mount(name="chat", prefix="", default_registry="default", title="Chat")) is CHAT_MOUNT
    assert registered_mounts() == before
    assert get_mount("chat") is CHAT_MOUNT and get_mount("inventory") is INVENTORY_MOUNT
    # The URL wiring still mounts the same objects at the same places.
    assert reverse("chat:page") == CHAT_MOUNT.path == "/"
    assert reverse("inventory:page") == INVENTORY_MOUNT.path == "/inventory/"


def test_one_name_with_different_options_is_refused_and_an_unknown_name_is_explained():
    with pytest.raises(ValueError, match="registered twice"):
        register_mount(Mount(name="chat", prefix="elsewhere/", default_registry="default", title="Chat"))
    assert get_mount("chat").prefix == ""
    with pytest.raises(KeyError, match=r"AppConfig\.ready"):
        get_mount("ghost")
