"""Print the figures the reliability harnesses wrote (docs/reliability.md) as one table.

    python tests/reliability/report.py [DIR]     # DIR: $NRFPROV_RELIABILITY_OUT by default

Each harness writes rows ``{"figure", "value", "goal", "detail"}`` into DIR: one per line in
``<harness>.jsonl``, or as one JSON list in ``<harness>.json``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def load(directory: Path) -> list[tuple[str, dict[str, str]]]:
    rows = []
    for path in sorted([*directory.glob("*.jsonl"), *directory.glob("*.json")]):
        text = path.read_text(encoding="utf-8")
        lines = [ln for ln in text.splitlines() if ln.strip()]
        docs = json.loads(text) if path.suffix == ".json" else [json.loads(ln) for ln in lines]
        for doc in docs if isinstance(docs, list) else [docs]:
            rows.append((path.stem, {k: str(doc.get(k, "")) for k in ("figure", "value", "goal", "detail")}))
    return rows


def render(rows: list[tuple[str, dict[str, str]]]) -> str:
    head = ("harness", "figure", "value", "goal", "detail")
    table = [head] + [(h, r["figure"], r["value"], r["goal"], r["detail"]) for h, r in rows]
    widths = [min(max(len(row[i]) for row in table), cap) for i, cap in enumerate((16, 62, 18, 40, 200))]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c[:w].ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(row) for row in table[1:]]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    directory = Path(argv[1] if len(argv) > 1 else os.environ.get("NRFPROV_RELIABILITY_OUT", ""))
    if not directory.is_dir():
        print(f"report: no figures directory {str(directory)!r} (set NRFPROV_RELIABILITY_OUT)", file=sys.stderr)
        return 2
    rows = load(directory)
    if not rows:
        print(f"report: no *.jsonl / *.json figures in {directory}", file=sys.stderr)
        return 1
    print(render(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
