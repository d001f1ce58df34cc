"""The README and docs/ stay a user's guide with honest, findable results.

The README is short and shows the real plug-in example; every relative link (and #anchor) in
the markdown resolves; a measured table lives in one file only; every results page says how to
regenerate its tables and which commit they were measured at.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MAX_README_LINES = 300

FENCE = re.compile(r"^(```|~~~)")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
INLINE_CODE = re.compile(r"`[^`]*`")
COMMIT = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b")


def markdown_files() -> list[Path]:
    return [README, *sorted((ROOT / "docs").rglob("*.md"))]


def results_pages() -> list[Path]:
    return sorted((ROOT / "docs" / "results").glob("*.md"))


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    out, in_fence = [], False
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            in_fence = not in_fence
            continue
        if not in_fence:
            out.append(line)
    return out


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(info string, content) of every fenced block; content keeps its final newline."""
    blocks, info, body = [], None, []
    for line in text.splitlines(keepends=True):
        if info is None:
            m = re.match(r"^```(\S*)\s*$", line)
            if m:
                info, body = m[1], []
        elif re.match(r"^```\s*$", line):
            blocks.append((info, "".join(body)))
            info = None
        else:
            body.append(line)
    return blocks


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped except '-' and '_', spaces to '-'."""
    text = heading.strip().lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in "-_ ")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file, with GitHub's -1, -2 suffixes for repeats."""
    seen: dict[str, int] = {}
    out = set()
    for line in prose_lines(path.read_text()):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = slug(m[1])
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def section(text: str, heading: str) -> str:
    """The text of the `## heading` section, up to the next heading of level 2 or 1 (a `#` line
    inside a fenced block, such as a YAML comment, is no heading)."""
    lines = text.splitlines(keepends=True)
    in_fence, start, end = False, None, len(lines)
    for i, line in enumerate(lines):
        if FENCE.match(line.lstrip()):
            in_fence = not in_fence
        elif in_fence:
            continue
        elif start is None and line.rstrip("\n") == f"## {heading}":
            start = i
        elif start is not None and re.match(r"^#{1,2} ", line):
            end = i
            break
    assert start is not None, f"README.md has no '## {heading}' section"
    return "".join(lines[start:end])


# -- the README ----------------------------------------------------------------------------------


def test_readme_is_short() -> None:
    n = len(README.read_text().splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines; keep it a guide of at most {MAX_README_LINES}"


PLUG_INS = "Plugging in an energy, a solver or an objective"


@pytest.mark.parametrize(
    ("heading", "language", "source"),
    [
        ("Plugging in a task", "python", "tasks/linear_system.py"),
        ("Plugging in a task", "yaml", "configs/task/linear_system.yaml"),
        (PLUG_INS, "yaml", "configs/solver/gd_normalized.yaml"),
    ],
)
def test_readme_shows_the_real_plug_in_files(heading: str, language: str, source: str) -> None:
    blocks = [body for info, body in fenced_blocks(section(README.read_text(), heading)) if info == language]
    assert blocks, f"'{heading}' has no ```{language} block"
    assert blocks[0] == (ROOT / source).read_text(), (
        f"the README's {language} block under '{heading}' differs from {source}; paste the file verbatim"
    )


def group_table(text: str) -> dict[str, str]:
    """The README's table of config groups: group -> its row of choices."""
    rows = re.findall(r"^\| `([a-z_]+)` \| (.*) \|$", section(text, "Config groups"), flags=re.M)
    return dict(rows)


def test_the_group_table_lists_every_config() -> None:
    """Issue 32: the table left out the sudoku task and the *_verified solvers. Every file of
    configs/<group>/ is named in its group's row, as `name`."""
    table = group_table(README.read_text())
    groups = sorted(p.name for p in (ROOT / "configs").iterdir() if p.is_dir())
    assert sorted(table) == groups
    missing = {
        group: names
        for group in groups
        if (
            names := [
                p.stem for p in sorted((ROOT / "configs" / group).glob("*.yaml")) if f"`{p.stem}`" not in table[group]
            ]
        )
    }
    assert not missing, f"the README's group table does not name: {missing}"


# -- links -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", markdown_files(), ids=rel)
def test_relative_links_resolve(path: Path) -> None:
    broken = []
    for line in prose_lines(path.read_text()):
        for target in LINK.findall(INLINE_CODE.sub("", line)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            if not linked.exists():
                broken.append(f"{target} (no file {linked})")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{target} (no heading '#{anchor}' in {rel(linked)})")
    assert not broken, f"{rel(path)} has broken links: {'; '.join(broken)}"


def test_slug_follows_github() -> None:
    assert slug("Language modelling: Energy-Based Transformer against Transformer++") == (
        "language-modelling-energy-based-transformer-against-transformer"
    )
    assert slug("The task interface: hooks and shared tests") == "the-task-interface-hooks-and-shared-tests"
    assert slug("`irem-study` and snake_case") == "irem-study-and-snake_case"


# -- measured tables ---------------------------------------------------------------------------------


def table_rows(path: Path) -> set[str]:
    """Markdown table rows holding a figure (a digit); header separator rows have none."""
    return {line.strip() for line in path.read_text().splitlines() if line.startswith("|") and re.search(r"\d", line)}


def test_no_table_row_appears_in_two_files() -> None:
    first_seen: dict[str, Path] = {}
    twice = []
    for path in markdown_files():
        for row in table_rows(path):
            if row in first_seen:
                twice.append(f"{rel(first_seen[row])} and {rel(path)}: {row[:80]}")
            else:
                first_seen[row] = path
    assert not twice, "table rows held in two files (keep one copy):\n" + "\n".join(twice)


def test_results_pages_exist() -> None:
    assert results_pages(), "docs/results/ has no pages"


@pytest.mark.parametrize("path", results_pages(), ids=rel)
def test_results_page_says_how_and_when(path: Path) -> None:
    text = path.read_text()
    commands = [body for _, body in fenced_blocks(text) if "irem-" in body or "python benchmarks/" in body]
    assert commands, f"{rel(path)} names no command (a fenced block with irem-... or python benchmarks/...)"
    assert COMMIT.search(text), f"{rel(path)} names no commit its figures were measured at"
