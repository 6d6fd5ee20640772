"""Every relative link in README.md and docs/*.md points to a file or directory that exists
(resolved from the linking file's directory, without its #fragment); web links are not fetched."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")  # [text](target); images are links too
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def broken_links(doc: Path, root: Path = ROOT) -> list[str]:
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)  # code blocks
    bad = []
    for target in LINK.findall(text) + IMAGE.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http:, mailto:, in-page anchors
        path = target.split("#", 1)[0]
        if not (doc.parent / path).exists():
            bad.append(f"{doc.relative_to(root)} -> {target}")
    return bad


def test_docs_exist_and_readme_links_them():
    names = {d.name for d in documents()}
    assert {"cli.md", "numerics.md", "fixed-point-loihi2.md", "data-formats.md", "ray.md"} <= names
    assert "docs/cli.md" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_relative_link_resolves():
    bad = [b for d in documents() for b in broken_links(d)]
    assert not bad, "broken links: " + "; ".join(bad)


def test_a_broken_link_is_found(tmp_path):
    doc = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("x")
    doc.write_text("[ok](there.md#part) [web](https://example.org) [gone](missing.md)\n"
                   "```\n[in code](ignored.md)\n```\n")
    assert [b.split(" -> ")[1] for b in broken_links(doc, tmp_path)] == ["missing.md"]

