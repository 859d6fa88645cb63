"""The client's documentation runs: every example of docs/client/*.md against the test service.

Each page's fenced blocks run in order in one namespace of the page's own,
as a reader would paste them into one Python session:

* ```` ```python ```` blocks are executed;
* ```` ```sql ```` blocks (the ADQL to paste into TOPCAT) are run through
  the service's TAP and must return rows;
* a ```` ```text ```` block right after a python block is that block's
  output as the page shows it (abridged): its lines must appear, in order,
  among the lines the block prints (``output_matches``: a line ``...``
  stands for lines left out, ``<words>`` for a value that depends on the
  machine; numbers agree within ``NUMBER_TOLERANCE``);
* other blocks (``sh``, ``ini``) are not run.

A block runs unless the line right before it is a comment
``<!-- docs-test: skip because <reason> -->``: only for what cannot run here
at all (the test machines are offline, so e.g. Sesame).  A failing block
fails its page's test with the page, the block's number and the line in the
Markdown file (the code is compiled with the page as its file name and its
own line numbers, so the traceback points into the page).

The pages address the archive as a reader would, and the test replaces
exactly these strings in the code before running it (``SUBSTITUTIONS``):

* ``http://127.0.0.1:8080`` (the client's default server, a local DaCHS) by
  the test instance's URL, on every page;
* on other-archives.md, the placeholder ``https://other-archive.example/tap``
  by the test instance's TAP URL, and the other archive's table
  ``ivoa.obscore`` by ``otherarchive.obscore``: the test instance's second
  resource (tests/client/conftest.py) stands in for another archive.

Printed output is compared after the way back (the test instance's URL to
``http://127.0.0.1:8080``, and ``OUTPUT_BACK``), so that the page shows the
URL and table name a reader will see.

A page-specific substitution must occur in its page, so that a reworded page
fails here instead of silently reaching for the real placeholder host.

Every page runs in a fresh temporary folder (downloads land there) with
astropy's cache in a temporary folder too (the model file of ``query_image``),
and ``conf`` is restored after each page.  Finally, every public method of
``SimilarityClass`` must be called in some page's example, so that the docs
cannot silently fall behind the client.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import re
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest
from astropy.config import set_temp_cache

from vo_similarity.client import Similarity, SimilarityClass, conf

pytestmark = [pytest.mark.dachs, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "client"
PAGES = sorted(DOCS.glob("*.md"))
#: pages outside docs/client whose python examples count for the method check but
#: are not run here: docs/samp.md's need a SAMP hub with TOPCAT and Aladin, which
#: tests/client/test_samp.py starts for its own tests
ALSO_DOCUMENTING = [ROOT / "docs" / "samp.md"]

#: the default server of the pages, replaced on every page by the test instance's URL
DOC_SERVER = "http://127.0.0.1:8080"
#: page -> [(text in the page, what replaces it: a function of the service)]
SUBSTITUTIONS = {
    "other-archives.md": [
        ('"https://other-archive.example/tap"', lambda service: repr(service.tap_url)),
        ('OTHER_OBSCORE = "ivoa.obscore"',
         lambda service: 'OTHER_OBSCORE = "otherarchive.obscore"'),
    ],
}

#: page -> [(text in the printed output, what the page shows instead)]
OUTPUT_BACK = {
    "other-archives.md": [("otherarchive.obscore", "ivoa.obscore")],
}
#: numbers of a shown output agree with the printed ones within this (relative to
#: max(1, |x|)): float32 embeddings differ across CPUs by rounding, ~1e-6 in a
#: cosine (docs/client/image.md), far below it; a changed result differs by more
NUMBER_TOLERANCE = 1e-4

_FENCE = re.compile(r"^```(?P<lang>[\w-]*)[ \t]*\n(?P<code>.*?)^```[ \t]*$",
                    re.DOTALL | re.MULTILINE)
_MARKER = re.compile(r"<!--\s*docs-test:(?P<body>.*?)-->", re.DOTALL)
_SKIP = re.compile(r"\s*skip because\s+(?P<reason>\S.*?)\s*$", re.DOTALL)


@dataclass
class Block:
    """One fenced block of a page."""

    number: int        # 1-based, among the page's fenced blocks
    lang: str
    code: str
    line: int          # line of the page on which the code starts (1-based)
    skip_reason: str | None
    output: Block | None = None  # the text block that shows a python block's output


def read_blocks(page: Path) -> list[Block]:
    """The fenced blocks of ``page`` with their skip markers.

    Raises:
        AssertionError: a ``docs-test:`` comment that is not a skip with a
            reason, or that is not right before a ``python`` block.
    """
    text = page.read_text(encoding="utf-8")
    blocks, marked, previous_end = [], set(), None
    for number, m in enumerate(_FENCE.finditer(text), start=1):
        before = text[:m.start()].rstrip()
        skip_reason = None
        if before.endswith("-->"):
            comment = _MARKER.search(before, before.rfind("<!--"))
            if comment is not None:
                skip = _SKIP.fullmatch(comment.group("body"))
                assert skip, (f"{page.name}: line {text.count(chr(10), 0, comment.start()) + 1}: "
                              "a docs-test comment must read "
                              "'<!-- docs-test: skip because <reason> -->'")
                assert m.group("lang") == "python", (
                    f"{page.name}: block {number}: only python blocks may be skipped")
                skip_reason = skip.group("reason")
                marked.add(comment.start())
        line = text.count("\n", 0, m.start("code")) + 1
        block = Block(number, m.group("lang"), m.group("code"), line, skip_reason)
        if (block.lang == "text" and blocks and blocks[-1].lang == "python"
                and not text[previous_end:m.start()].strip()):
            blocks[-1].output = block
        blocks.append(block)
        previous_end = m.end()
    stray = [c.start() for c in _MARKER.finditer(text) if c.start() not in marked]
    assert not stray, (f"{page.name}: a docs-test comment on line "
                       f"{text.count(chr(10), 0, stray[0]) + 1} is not right before a block")
    return blocks


def substituted(page: Path, code: str, service) -> str:
    """``code`` with the page's stand-ins for the test instance (module docstring)."""
    code = code.replace(DOC_SERVER, service.url)
    for text, replacement in SUBSTITUTIONS.get(page.name, []):
        code = code.replace(text, replacement(service))
    return code


def _where(page: Path, block: Block, exc: BaseException) -> str:
    """``page, block n, line m`` of the innermost frame inside the page, and the traceback."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(page)]
    line = frames[-1].lineno if frames else block.line
    shown = "".join(traceback.format_exception(exc))
    return (f"{page.relative_to(ROOT)}, block {block.number} (starting on line {block.line}), "
            f"line {line}: {type(exc).__name__}: {exc}\n\n{shown}")


def _tokens(line: str) -> list[str | float]:
    out = []
    for token in line.split():
        try:
            out.append(float(token))
        except ValueError:
            out.append(token)
    return out


_PLACEHOLDER = re.compile(r"<[^<>]*>")


def _same_line(shown: str, printed: str) -> bool:
    if _PLACEHOLDER.search(shown):  # e.g. <64 hex digits>: any text without spaces
        parts = _PLACEHOLDER.split(" ".join(shown.split()))
        return re.fullmatch(r"\S+".join(map(re.escape, parts)),
                            " ".join(printed.split())) is not None
    a, b = _tokens(shown), _tokens(printed)
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if isinstance(x, float) and isinstance(y, float):
            if abs(x - y) > NUMBER_TOLERANCE * max(1.0, abs(x)):
                return False
        elif x != y:
            return False
    return True


def output_matches(shown: str, printed: str) -> str | None:
    """None if the shown lines are, in order, among the printed ones; else the first miss.

    Lines are compared as whitespace-separated tokens (astropy pads columns
    to the widest value shown); a shown line ``...`` is an elision, and
    ``<words>`` in a shown line stands for one run of non-space characters
    (a value that depends on the machine, e.g. a file's digest).
    """
    lines = iter(printed.splitlines())
    for wanted in shown.splitlines():
        if wanted.strip() in ("", "..."):
            continue
        if not any(_same_line(wanted, got) for got in lines):
            return wanted
    return None


def run_block(page: Path, block: Block, namespace: dict, service) -> None:
    """Run one block; a failure becomes pytest.fail naming page, block and line."""
    code = substituted(page, block.code, service)
    try:
        if block.lang == "python":
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                # blank lines first, so that the code's line numbers are the page's
                compiled = compile("\n" * (block.line - 1) + code, str(page), "exec")
                exec(compiled, namespace)  # noqa: S102 -- running the examples is the test
            if block.output is not None:
                text = printed.getvalue().replace(service.url, DOC_SERVER)
                for got, shown in OUTPUT_BACK.get(page.name, []):
                    text = text.replace(got, shown)
                miss = output_matches(block.output.code, text)
                assert miss is None, (
                    f"the output shown on line {block.output.line} and after differs from "
                    f"what the block prints: no printed line matches\n  {miss!r}\n"
                    f"printed:\n{text}")
        elif block.lang == "sql":
            rows = Similarity.query_tap(code)
            assert len(rows) > 0, "the query returns no rows"
    except Exception as exc:  # noqa: BLE001 -- any failure of an example, reported with its place
        pytest.fail(_where(page, block, exc), pytrace=False)


@contextlib.contextmanager
def conf_kept():
    """Restore every ``conf`` item after the block (a page may set them)."""
    with contextlib.ExitStack() as stack:
        for name in type(conf).__dict__:
            if not name.startswith("_") and hasattr(type(conf).__dict__[name], "defaultvalue"):
                stack.enter_context(conf.set_temp(name, getattr(conf, name)))
        yield


def test_the_pages_are_there_and_in_the_index():
    names = {p.name for p in PAGES}
    assert "README.md" in names and len(names) >= 8, names
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", index))
    missing = sorted(n for n in names - {"README.md"} if n not in linked)
    assert not missing, f"docs/client/README.md does not link {missing}"
    for page in PAGES:  # every relative link of every page leads to a file
        for target in re.findall(r"\]\(([^)#\s:]+)(?:#[^)]*)?\)", page.read_text("utf-8")):
            assert (page.parent / target).exists(), f"{page.name}: broken link {target}"


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_the_examples_of_the_page_run(page, service, tmp_path, monkeypatch):
    blocks = read_blocks(page)
    runnable = [b for b in blocks if b.lang in ("python", "sql") and b.skip_reason is None]
    assert runnable, f"{page.name} has no example to run"
    for text, _ in SUBSTITUTIONS.get(page.name, []):
        assert any(text in b.code for b in runnable), (
            f"{page.name} no longer contains {text!r}: update SUBSTITUTIONS")
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "cache").mkdir()
    monkeypatch.chdir(work)
    namespace = {"__name__": "__docs__"}
    with set_temp_cache(tmp_path / "cache"), conf_kept():
        for block in runnable:
            run_block(page, block, namespace, service)


def public_methods() -> list[str]:
    """The public methods of SimilarityClass defined by this project (not astroquery's)."""
    names = set()
    for cls in SimilarityClass.__mro__:
        if not cls.__module__.startswith("vo_similarity"):
            continue
        names.update(name for name, value in vars(cls).items()
                     if not name.startswith("_") and inspect.isfunction(value))
    return sorted(names)


def test_every_public_method_is_in_an_example():
    methods = public_methods()
    assert {"query_similar", "refine", "query_image", "join_archive"} <= set(methods)
    code = "\n".join(b.code for page in PAGES + ALSO_DOCUMENTING for b in read_blocks(page)
                     if b.lang == "python")
    missing = [m for m in methods if not re.search(rf"\.{m}\(", code)]
    assert not missing, f"no example of docs/client/ (or docs/samp.md) calls {missing}"


def test_skip_markers_need_a_reason(tmp_path):
    """The marker grammar is enforced (the check can fail)."""
    page = tmp_path / "page.md"
    page.write_text("<!-- docs-test: skip -->\n```python\nx = 1\n```\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="skip because"):
        read_blocks(page)
    page.write_text("<!-- docs-test: skip because offline -->\n```python\nx = 1\n```\n"
                    "```python\ny = 2\n```\n", encoding="utf-8")
    first, second = read_blocks(page)
    assert (first.skip_reason, second.skip_reason) == ("offline", None)
    assert (first.line, second.line) == (3, 6)


def test_shown_output_is_compared():
    """Elisions and rounding pass; another row, order or value does not."""
    printed = ("rank  dist    obs_id\n---- ------ ------\n   1 0.2212043 a/b\n"
               "   2 0.2351550 c/d\n   3 0.2629566 e/f\n")
    assert output_matches("rank dist obs_id\n...\n3   0.26295656 e/f", printed) is None
    assert output_matches("1 0.2212 a/b\n3 0.2630 e/f", printed) is None
    assert output_matches("3 0.26 e/f", printed) == "3 0.26 e/f"         # another value
    assert output_matches("2 0.23516 c/d\n1 0.22120 a/b", printed) == "1 0.22120 a/b"  # order
    assert output_matches("4 0.3 g/h", printed) == "4 0.3 g/h"           # a row not there
    assert output_matches("2 <a number> c/d", printed) is None
    assert output_matches("2 <a number> e/f", printed) == "2 <a number> e/f"
    assert output_matches("x/<digest>.onnx", "x/35cb.onnx") is None
    assert output_matches("x/<digest>.onnx", "y/35cb.onnx") == "x/<digest>.onnx"
