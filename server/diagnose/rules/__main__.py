"""``python -m deepdive.diagnose.rules``: print the rule catalogue (Markdown), or ``--write PATH`` it to a file.

The committed page is regenerated with ``python -m deepdive.diagnose.rules --write server/diagnose/rules.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from deepdive.diagnose.rules.doc import rules_markdown
from deepdive.fsutil import atomic_write_text


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deepdive.diagnose.rules",
                                     description="Print the catalogue of Deepdive's static performance rules.")
    parser.add_argument("--write", metavar="PATH", default=None,
                        help="write the page to PATH (atomically) instead of printing it")
    args = parser.parse_args(argv)
    page = rules_markdown()
    if args.write is None:
        sys.stdout.write(page)
        return 0
    target = Path(args.write)
    if target.is_dir():
        print(f"error: {target} is a directory: give the file to write, e.g. {target / 'rules.md'}", file=sys.stderr)
        return 2
    if not target.parent.is_dir():
        print(f"error: the folder {target.parent} does not exist: create it or write elsewhere", file=sys.stderr)
        return 2
    atomic_write_text(target, page)
    print(f"wrote {target} ({len(page.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
