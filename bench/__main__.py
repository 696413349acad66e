"""``python -m bench`` (``make bench``): run every benchmark module in bench/ and print its figures.

Each module has a ``main()`` that measures its own baseline in the same run and prints ratios.
``python -m bench NAME…`` runs only the named ones.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if not m.name.startswith("_"))
    chosen = [n for n in names if not argv or n in argv]
    for name in chosen:
        print(f"\n=== bench.{name} ===", flush=True)
        started = time.monotonic()
        importlib.import_module(f"bench.{name}").main()
        print(f"--- bench.{name}: {time.monotonic() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
