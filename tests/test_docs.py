"""The documentation (issue 30): the generated pages are current, the README stays short, and every command the
README and the guides show is one the command line accepts (the short ones are run)."""
import re
import shlex
import shutil
from pathlib import Path

import pytest

from nas_kd.cli import build_parser, main
from nas_kd.report import report

ROOT = Path(__file__).parent.parent
GUIDES = sorted(p for p in (ROOT / "docs").glob("*.md") if p.name not in ("cli.md", "recipes.md", "results.md"))
PAGES = [ROOT / "README.md", *GUIDES]


def commands(path: Path) -> list[str]:
    """The shell commands of a page's code blocks (continuations joined, comments dropped, ``&&`` split)."""
    blocks, current, language = [], None, ""
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            if current is None:
                current, language = [], line[3:].strip()
            else:
                if language in ("", "bash", "sh"):
                    blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line)
    found = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s#.*$", "", line).strip()
            for part in line.split("&&"):
                part = part.strip()
                if part.startswith(("nas-kd ", "bash ", "python ", "torchrun ")):
                    found.append(part)
    return found


ALL = [(p.name, c) for p in PAGES for c in commands(p)]


def test_the_generated_pages_are_current():
    assert report(ROOT, build_parser(), check=True) == []  # else: run `nas-kd report` and commit what it writes


def test_a_stale_page_is_found(tmp_path):
    for name in ("results", "README.md", "docs"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copyfile)(src, tmp_path / name)
    page = tmp_path / "docs" / "results.md"
    page.write_text(page.read_text().replace("94.17", "95.17"))
    assert report(tmp_path, build_parser(), check=True) == ["docs/results.md"]
    assert main(["report", "--check", "--root", str(tmp_path)]) == 2
    assert report(tmp_path, build_parser()) == ["docs/results.md"] and report(tmp_path, build_parser(), check=True) == []


# comparative words a page may use only inside a generated block (nas_kd.stats decided them) or next to a p-value
UNBACKED = re.compile(r"\b(ties?|tied|level with|by more than the (?:seed )?spread|summed seed|not separable)\b"
                      r"|marked `\*`", re.I)


def test_comparative_sentences_come_from_the_statistics_module():
    """Outside generated blocks, a hand-written page compares results only in a sentence that cites its p-value; the
    old star rule ("more than the summed s.d.") is gone from the pages and the code."""
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = re.sub(r"<!-- report:(\S+) -->.*?<!-- /report:\1 -->", "", page.read_text(), flags=re.S)
        for sentence in re.split(r"(?<=[.;:])\s+", text):
            if UNBACKED.search(sentence) and not re.search(r"\bp [<=]?\s?0?\.\d|\bp-values?\b|Holm", sentence):
                raise AssertionError(f"{page.name}: {sentence.strip()[:200]!r} compares without a test")
    star = re.compile(r"acc_std\"\] \+ \w+\[\"acc_std|' \*' if")
    assert not [f for f in (ROOT / "nas_kd").rglob("*.py") if star.search(f.read_text())]


def test_the_readme_is_short_and_links_every_guide():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    for page in [*GUIDES, ROOT / "docs/cli.md", ROOT / "docs/recipes.md", ROOT / "docs/results.md"]:
        assert f"docs/{page.name}" in readme, page.name


def test_the_pages_show_commands():
    assert len(ALL) >= 40 and {p for p, _ in ALL} >= {"README.md", "runs.md", "latency.md", "distillation.md"}


@pytest.mark.parametrize("page, command", ALL, ids=[f"{p}:{c[:60]}" for p, c in ALL])
def test_every_command_shown_is_accepted(page, command):
    argv = shlex.split(command)
    if argv[0] in ("bash", "python"):
        assert (ROOT / argv[1]).is_file(), command
        return
    if argv[0] == "torchrun":
        argv = argv[argv.index("nas_kd") + 1:]
    else:
        argv = argv[1:]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:
        assert e.code == 0, f"{page}: `{command}` is not accepted by nas-kd"
        return
    for key in ("recipe", "table"):  # a committed file it names exists
        value = getattr(args, key, None)
        if value and value.startswith(("recipes/", "results/")):
            assert (ROOT / value).exists(), f"{page}: `{command}` names a missing {value}"


SHORT = ["nas-kd report --check", "nas-kd bench --help"]  # run here, as shown


@pytest.mark.parametrize("command", SHORT)
def test_the_short_commands_run(command, capsys):
    assert any(c == command for _, c in ALL), f"{command} is not shown in the docs any more"
    try:
        code = main(shlex.split(command)[1:])
    except SystemExit as e:  # --help
        code = e.code
    assert code == 0
