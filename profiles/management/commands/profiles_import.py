from django.core.management.base import BaseCommand, CommandError

from profiles.yamlio import ImportFailed, import_file


class Command(BaseCommand):
    help = "Import registries and profiles from a YAML file (all or nothing)."

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--replace", action="store_true", help="make existing registries match the file")
        parser.add_argument("--source", default="import", help="metadata.source recorded on written versions")

    def handle(self, *args, file: str, replace: bool, source: str, **options):
        try:
            report = import_file(file, replace=replace, source=source)
        except ImportFailed as exc:
            raise CommandError(f"{exc} (nothing was imported)") from None
        self.stdout.write(f"{file}: {report.summary()}")
