"""Seed the demo idempotently: registries (through the importer), inventory data, demo users."""

import os

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from profiles.yamlio import ImportFailed, import_file


class Command(BaseCommand):
    help = "Seed demo registries, inventory and the demo users (running it again changes nothing)."

    def handle(self, *args, **options):
        try:
            report = import_file(settings.PROFILES_SEED_FILE, source="seed")
        except ImportFailed as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"profiles: {report.summary()}")
        call_command("inventory_seed", stdout=self.stdout)
        users = get_user_model().objects
        for username, env_name, default, superuser in (
            ("admin", "DEMO_ADMIN_PASSWORD", "admin", True),
            ("demo", "DEMO_USER_PASSWORD", "demo", False),
        ):
            if users.filter(username=username).exists():
                self.stdout.write(f"user {username}: exists (password unchanged)")
                continue
            password = os.environ.get(env_name) or default
            if superuser:
                users.create_superuser(username, f"{username}@example.com", password)
            else:
                users.create_user(username, f"{username}@example.com", password)
            self.stdout.write(f"user {username}: created")
