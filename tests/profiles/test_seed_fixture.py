"""The demo seed is a copy of the shared parity fixture; this keeps the two identical."""

from pathlib import Path

import pytest
import yaml
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "fixtures" / "registries.yaml"
VENDORED = settings.PROFILES_SEED_FILE


@pytest.mark.skipif(not SHARED.exists(), reason="the shared spec folder is not beside this checkout")
def test_the_vendored_seed_matches_the_shared_fixture():
    assert yaml.safe_load(VENDORED.read_text()) == yaml.safe_load(SHARED.read_text())


def test_the_vendored_seed_holds_both_apps_registries():
    registries = yaml.safe_load(VENDORED.read_text())["registries"]
    assert sorted(registries) == ["default", "inventory"]
    assert sorted(registries["default"]["profiles"]) == ["agent", "analyst", "default"]
    assert sorted(registries["inventory"]["profiles"]) == ["analyst", "default", "inventory"]
