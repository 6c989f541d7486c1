"""Django-side set-up of a benchmark database (run as a subprocess with DATABASE_URL set).

    dbtool.py init      migrate, seed the demo, create the `bench` user and its DRF token
    dbtool.py prepare   (JSON spec on stdin) conversations of the bench user, extra profiles, ...

The last stdout line is JSON.
"""

from __future__ import annotations

import io
import json
import os
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402

OPENAI_PROFILE = "bench-openai"
BENCH_USER = "bench"


def profile_list_path() -> str:
    """The chat mount's profile list route, whatever its shape (the profile API may change)."""
    from django.urls import NoReverseMatch, reverse

    for name in ("chat:profile-list", "profile-list"):
        for kwargs in ({}, {"registry": "default"}, {"registry_slug": "default"}, {"slug": "default"}):
            try:
                return reverse(name, kwargs=kwargs)
            except NoReverseMatch:
                continue
    return "/api/chat/profiles"


def init() -> dict:
    call_command("migrate", verbosity=0, interactive=False)
    call_command("seed_demo", stdout=io.StringIO())
    user, _ = get_user_model().objects.get_or_create(username=BENCH_USER, defaults={"email": "bench@example.com"})
    token, _ = Token.objects.get_or_create(user=user)
    return {"token": token.key, "user_id": user.pk, "profile_list_path": profile_list_path()}


def prepare(spec: dict) -> dict:
    from chat.models import Conversation
    from profiles import services
    from profiles.models import Profile, Registry

    user = get_user_model().objects.get(username=BENCH_USER)
    out: dict = {}
    if spec.get("openai_profile"):
        if not Profile.objects.filter(registry__slug="default", slug=OPENAI_PROFILE).exists():
            services.profile_create(
                registry_slug="default",
                slug=OPENAI_PROFILE,
                runtime={
                    "system_prompt": "You are a benchmark.",
                    "step_settings_patch": {"ai-chat": {"ai-api-type": "openai", "ai-engine": "x"}},
                },
            )
        out["openai_profile"] = OPENAI_PROFILE
    count = int(spec.get("profiles") or 0)
    if count:
        registry = Registry.objects.get(slug="default")
        stamp = 1_700_000_000_000
        existing = set(Profile.objects.filter(registry=registry).values_list("slug", flat=True))
        rows = [
            Profile(
                registry=registry,
                slug=f"bench-{i:05d}",
                display_name=f"Bench profile {i}",
                description=f"Benchmark profile number {i}.",
                runtime={"system_prompt": f"You are benchmark assistant {i}.", "tools": []},
                extensions={"webchat.starter_suggestions@v1": {"items": [f"Question {i}?"]}},
                created_at_ms=stamp,
                updated_at_ms=stamp,
                source="seed",
            )
            for i in range(max(0, count - len(existing)))
            if f"bench-{i:05d}" not in existing
        ]
        Profile.objects.bulk_create(rows, batch_size=500)
        out["profiles"] = Profile.objects.filter(registry=registry).count()
    count = int(spec.get("conversations") or 0)
    if count:
        from chat.mounts import CHAT_MOUNT

        selected = {}
        if spec.get("conversation_profile"):
            selected = {"selected_registry": "default", "selected_profile": spec["conversation_profile"]}
        ids = [uuid.uuid4() for _ in range(count)]
        Conversation.objects.bulk_create(
            [Conversation(id=i, owner=user, mount=CHAT_MOUNT.name, **selected) for i in ids], batch_size=500
        )
        out["conversations"] = [str(i) for i in ids]
    return out


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "init":
        result = init()
    elif command == "prepare":
        result = prepare(json.loads(sys.stdin.read() or "{}"))
    else:
        raise SystemExit(f"unknown command {command}")
    print(json.dumps(result))
