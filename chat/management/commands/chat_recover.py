"""Mark turns left `running` by a stopped server as `interrupted`, each with its terminal frame (run before
starting a single node)."""

from asgiref.sync import async_to_sync
from django.core.management.base import BaseCommand

from chat.turns import turns_recover_stopped


class Command(BaseCommand):
    help = "Mark every running turn interrupted. Only for single-node start-up: on a cluster, live workers own theirs."

    def handle(self, *args, **options):
        count = async_to_sync(turns_recover_stopped)()
        self.stdout.write(f"interrupted turns marked: {count}")
