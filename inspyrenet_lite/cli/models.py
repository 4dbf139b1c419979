"""``inspyrenet-lite models``: the registry as a table (name, backbone, base size, trained on, cached)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from inspyrenet_lite.registry import MODELS, ModelEntry, encode_base_size


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inspyrenet-lite models",
        description="List the named models (use a name with --model, or Remover(model=NAME)).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="also say what each model is for and its sources")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def _row(entry: ModelEntry, cached: bool) -> dict[str, str]:
    return {
        "name": entry.name + (" *" if entry.saw_test_sets else ""),
        "backbone": entry.backbone,
        "base size": encode_base_size(entry.base_size),
        "trained on": entry.trained_on,
        "default inference": entry.inference,
        "cached": "yes" if cached else "no",
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from inspyrenet_lite.weights import is_cached

    entries = list(MODELS.values())
    cached = {e.name: is_cached(e) for e in entries}
    if args.json:
        out = [
            {
                "name": e.name,
                "backbone": e.backbone,
                "base_size": list(e.base_size),
                "trained_on": e.trained_on,
                "resize": e.resize,
                "hr_blend": e.hr_blend,
                "saw_test_sets": e.saw_test_sets,
                "summary": e.summary,
                "cached": cached[e.name],
            }
            for e in entries
        ]
        print(json.dumps(out, indent=2))
        return 0
    rows = [_row(e, cached[e.name]) for e in entries]
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    for entry, row in zip(entries, rows):
        print("  ".join(row[c].ljust(widths[c]) for c in columns).rstrip())
        if args.verbose:
            sources = [s for s in (entry.hub_url, entry.release_url, entry.gdrive_url) if s]
            print(f"    {entry.summary}")
            print(f"    sources: {', '.join(sources)}")
    print("\n* trained on data that includes the benchmark test sets: never use it for benchmark numbers.")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
