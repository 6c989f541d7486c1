import sys

from django.core.management.base import BaseCommand, CommandError

from profiles.yamlio import ImportFailed, import_file

# `--dry-run` exit status when the import would change something (0: nothing would change).
CHANGES_PLANNED = 3


class Command(BaseCommand):
    help = "Import registries and profiles from a YAML file (all or nothing)."

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--replace", action="store_true", help="make existing registries match the file")
        parser.add_argument("--source", default="import", help="metadata.source recorded on written versions")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="print the plan (create, update with its diff, unchanged, label move), change nothing; "
            f"exit 0 when nothing would change, {CHANGES_PLANNED} when something would",
        )

    def handle(self, *args, file: str, replace: bool, source: str, dry_run: bool, **options):
        try:
            report = import_file(file, replace=replace, source=source, dry_run=dry_run)
        except ImportFailed as exc:
            raise CommandError(f"{exc} (nothing was imported)") from None
        if not dry_run:
            self.stdout.write(f"{file}: {report.summary()}")
            return
        for line in report.plan_lines():
            self.stdout.write(line)
        self.stdout.write(f"{file}: dry run, nothing was changed: {report.summary()}")
        if report.changes:
            self.stdout.flush()
            sys.exit(CHANGES_PLANNED)
