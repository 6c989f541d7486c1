"""Mark turns left `running` by a stopped server as `interrupted` (run before starting a single node)."""

from django.core.management.base import BaseCommand

from chat.services import turns_mark_interrupted


class Command(BaseCommand):
    help = "Mark every running turn interrupted. Only for single-node start-up: on a cluster, live workers own theirs."

    def handle(self, *args, **options):
        count = turns_mark_interrupted()
        self.stdout.write(f"interrupted turns marked: {count}")
