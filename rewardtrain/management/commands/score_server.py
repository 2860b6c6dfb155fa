"""manage.py score_server: serve the score API's models over HTTP on SCORE_SERVER_URL's host
and port."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from config.addresses import score_server_address
from rewardtrain.services.score_client import score_server_secret


class Command(BaseCommand):
    help = "Run the score server: each project's published reward model, for the score API."

    def add_arguments(self, parser: CommandParser) -> None:
        host, port = score_server_address()
        parser.add_argument("--host", default=host)
        parser.add_argument("--port", type=int, default=port, help="0: any free port")
        parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])

    def handle(self, *args: Any, **options: Any) -> None:
        from rewardtrain.score_server import score_server  # torch: the score server is not the web

        with score_server(
            host=options["host"],
            port=options["port"],
            secret=score_server_secret(),
            device=options["device"],
        ) as server:
            port = server.server_address[1]
            self.stdout.write(f"score server listening on http://{options['host']}:{port}")
            self.stdout.flush()
            try:
                server.serve_forever()
            except KeyboardInterrupt:
                self.stdout.write("score server stopped")
