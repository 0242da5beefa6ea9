"""The documentation keeps up: README short, one page per area, exit codes listed, links that resolve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nrfprov.errors import EXIT_CODES

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = ["architecture", "provisioning", "modem-tools", "transports", "simulator", "stand-in", "extractor",
         "benchmarks"]
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


def test_readme_is_short_and_links_every_page() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    for page in PAGES:
        assert (ROOT / "docs" / f"{page}.md").is_file(), page
        assert f"(docs/{page}.md)" in text, f"README does not link docs/{page}.md"


@pytest.mark.parametrize("doc", [README, ROOT / "docs" / "architecture.md"], ids=["README", "architecture"])
def test_every_exit_code_is_documented(doc: Path) -> None:
    text = doc.read_text()
    for code, meaning in EXIT_CODES.items():
        row = re.search(rf"^\| {code} \| (.+?) \|", text, re.M)
        assert row is not None, f"{doc.name} lacks exit code {code}"
        assert row.group(1).replace("`", "") == meaning.replace("`", ""), (doc.name, code)


def test_the_hardware_skip_reason_points_at_a_real_heading() -> None:
    conftest = (ROOT / "tests" / "conftest.py").read_text()
    heading = re.search(r"README: '([^']+)'", conftest)
    assert heading is not None
    assert f"### {heading.group(1)}\n" in README.read_text()


def test_relative_links_resolve() -> None:
    broken = []
    for doc in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        for target, _anchor in LINK.findall(doc.read_text()):
            if "://" in target:
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert not broken


def test_no_benchmark_figures_in_the_prose() -> None:
    # Measured times and rates go stale; they belong in benchmarks/RESULTS.md, which make bench rewrites.
    figure = re.compile(r"\b\d+(\.\d+)? ?(ms|µs|MB/s|GB/s|kB/s)\b")
    for doc in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        hits = [m.group(0) for m in figure.finditer(doc.read_text()) if m.group(0) not in ("250 ms",)]
        assert not hits, f"{doc.name}: {hits} (link benchmarks/RESULTS.md instead)"
