"""`python -m dragonfly.api --host 127.0.0.1 --port 8001`: run the control plane alone."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dragonfly.api", description="Dragonfly control plane")
    parser.add_argument("--host", default=None)
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    # Robyn parses sys.argv when it is imported and constructed: leave it nothing to misread.
    sys.argv = [sys.argv[0]]

    from dragonfly.api.app import build_app
    from dragonfly.config import Settings

    settings = Settings.from_env()
    logging.basicConfig(
        level=getattr(logging, settings.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    for noisy in ("robyn", "actix_server", "actix_web", "actix_http"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    host = args.host or settings.host
    port = args.port if args.port is not None else (settings.control_port or settings.port)
    # Migrate before the port opens: Robyn listens before its startup handler has run, and whoever waits
    # for the port (serve, a test, a readiness probe) must find the schema in place.
    asyncio.run(_migrate(settings.database_url))
    build_app(settings).start(host=host, port=port, _check_port=False)


async def _migrate(url: str) -> None:
    from dragonfly.storage.sql.connect import open_database

    db = await open_database(url)
    await db.close()


if __name__ == "__main__":
    main()
