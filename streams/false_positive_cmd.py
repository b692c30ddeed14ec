"""`warden false-positive ID`: publish mark_false_positive.

The worker lifts the restriction (reason `false_positive`); it is overturned,
so it does not count toward later levels and its reports become overturned.
"""

from __future__ import annotations

import argparse

from streams import admin


def add_arguments(parser: argparse.ArgumentParser) -> None:
    admin.add_common(parser)


def run(args: argparse.Namespace) -> int:
    return admin.submit("false-positive", admin.build_command("mark_false_positive", args))
