"""Seed the demo idempotently: registries (through the importer), inventory data, demo users."""

import os

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from profiles.yamlio import ImportFailed, import_file

# The demo's additions to the shared seed (a group-only profile, the group's default, stacked profiles).
DEMO_SEED_FILE = settings.BASE_DIR / "config" / "seed" / "groups.yaml"
SUPPORT_GROUP = "support"


class Command(BaseCommand):
    help = "Seed demo registries, inventory and the demo users (running it again changes nothing)."

    def handle(self, *args, **options):
        for seed_file in (settings.PROFILES_SEED_FILE, DEMO_SEED_FILE):
            try:
                report = import_file(seed_file, source="seed")
            except ImportFailed as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(f"profiles ({seed_file.name}): {report.summary()}")
        support, _ = Group.objects.get_or_create(name=SUPPORT_GROUP)
        call_command("inventory_seed", stdout=self.stdout)
        users = get_user_model().objects
        for username, env_name, default, superuser in (
            ("admin", "DEMO_ADMIN_PASSWORD", "admin", True),
            ("demo", "DEMO_USER_PASSWORD", "demo", False),
            ("support", "DEMO_SUPPORT_PASSWORD", "support", False),  # in the `support` group
        ):
            if users.filter(username=username).exists():
                self.stdout.write(f"user {username}: exists (password unchanged)")
                continue
            password = os.environ.get(env_name) or default
            if superuser:
                users.create_superuser(username, f"{username}@example.com", password)
            else:
                user = users.create_user(username, f"{username}@example.com", password)
                if username == SUPPORT_GROUP:
                    user.groups.add(support)
            self.stdout.write(f"user {username}: created")
