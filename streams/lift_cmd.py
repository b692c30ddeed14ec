"""`warden lift ID`: publish a manual lift (reason `manual`; it still counts toward the level)."""

from __future__ import annotations

import argparse

from streams import admin


def add_arguments(parser: argparse.ArgumentParser) -> None:
    admin.add_common(parser)


def run(args: argparse.Namespace) -> int:
    return admin.submit("lift", admin.build_command("lift", args))
