"""`warden restrict ID --scopes s1,s2 [--duration 2d|36h|90m]`: publish a manual restriction.

Without --duration the restriction is indefinite (SPEC "Topics").
"""

from __future__ import annotations

import argparse

from detectors.events import SCOPES
from streams import admin


def add_arguments(parser: argparse.ArgumentParser) -> None:
    admin.add_common(parser)
    parser.add_argument("--scopes", required=True, type=admin.parse_scopes,
                        help=f"comma-separated features to limit: {', '.join(SCOPES)}")
    parser.add_argument("--duration", type=admin.parse_duration,
                        help="how long, e.g. 2d, 36h, 90m (default: indefinite)")


def run(args: argparse.Namespace) -> int:
    return admin.submit("restrict", admin.build_command(
        "restrict", args, scopes=args.scopes, duration_ms=args.duration))
