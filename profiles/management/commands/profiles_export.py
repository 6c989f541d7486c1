from django.core.management.base import BaseCommand, CommandError

from profiles.errors import ProfileError
from profiles.yamlio import export_file, export_text


class Command(BaseCommand):
    help = "Export registries and profiles as YAML (to FILE atomically, or to standard output)."

    def add_arguments(self, parser):
        parser.add_argument("file", nargs="?")
        parser.add_argument("--registry", help="export only this registry")

    def handle(self, *args, file: str | None, registry: str | None, **options):
        try:
            if file:
                export_file(file, registry=registry)
                self.stderr.write(f"wrote {file}")
            else:
                self.stdout.write(export_text(registry=registry), ending="")
        except ProfileError as exc:
            raise CommandError(exc.message) from None
        except OSError as exc:
            raise CommandError(f"{file}: {exc}") from None
