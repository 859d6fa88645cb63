"""Every stage follows docs/cli.md: its --help, its exit statuses, its output flags.

The commands run as a user runs them, in subprocesses, several at a time so
that the walk over all stages takes seconds.
"""

from __future__ import annotations

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vo_similarity import cli_common
from vo_similarity.cli import STAGES

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
COMMON_FLAGS = ("-v", "--verbose", "-q", "--quiet", "--no-progress")
#: single-model stages: --model NAME defaults to DEFAULT_MODEL
ONE_MODEL = ("train", "embed", "evaluate", "tune", "neighbours", "update", "improve", "demo")


def vo_similarity(*args: str | Path) -> subprocess.CompletedProcess:
    """``vo-similarity ARGS`` in a subprocess."""
    return subprocess.run([sys.executable, "-m", "vo_similarity", *map(str, args)],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=120, check=False)


def run_all(commands: dict[str, tuple]) -> dict[str, subprocess.CompletedProcess]:
    """Run several commands at once; name -> finished process."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = {name: pool.submit(vo_similarity, *args) for name, args in commands.items()}
        return {name: future.result() for name, future in futures.items()}


def doc_section(title: str) -> str:
    """The text of the ``## title`` section of docs/cli.md."""
    pattern = rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)"
    match = re.search(pattern, DOC.read_text(), re.MULTILINE | re.DOTALL)
    assert match, f"docs/cli.md has no section '## {title}'"
    return match.group(1)


def table_rows(section: str) -> list[list[str]]:
    """The body rows of the first Markdown table of ``section``, as lists of cells."""
    lines: list[str] = []
    for line in section.splitlines():
        if line.startswith("|"):
            lines.append(line)
        elif lines:
            break
    assert len(lines) > 2, "no table"
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def documented_options() -> dict[str, set[str]]:
    """stage -> the options its row of the stage table names."""
    rows = table_rows(doc_section("The stages"))
    return {row[0].strip("`"): set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", row[-1]))
            for row in rows}


@pytest.fixture(scope="module")
def helps() -> dict[str, subprocess.CompletedProcess]:
    return run_all({name: (name, "--help") for name in STAGES} | {"": ("--help",)})


def test_the_stage_table_lists_every_stage():
    assert sorted(documented_options()) == sorted(STAGES)


def test_readme_pipeline_table_lists_the_same_stages_and_packages():
    readme = (DOC.parents[1] / "README.md").read_text()
    rows = table_rows(readme[readme.index("## The pipeline"):])
    stages = table_rows(doc_section("The stages"))
    assert [row[:2] for row in rows] == [row[:2] for row in stages]


def test_every_help_shows_the_common_flags_and_the_exit_statuses(helps):
    epilog = " ".join(cli_common.EPILOG.split())
    for name, proc in helps.items():
        assert proc.returncode == cli_common.EXIT_OK, (name, proc.stderr)
        out = proc.stdout
        for flag in COMMON_FLAGS:
            assert re.search(rf"(?<![\w-]){re.escape(flag)}\b", out), (name, flag)
        assert epilog in " ".join(out.split()), name


def test_every_help_shows_the_options_docs_cli_md_names(helps):
    for name, options in documented_options().items():
        assert options, f"no option for {name} in the stage table"
        out = helps[name].stdout
        for option in options:
            assert re.search(rf"(?<![\w-]){re.escape(option)}\b", out), (name, option)


def test_model_means_the_same_folder_everywhere(helps):
    for name in STAGES:
        out = " ".join(helps[name].stdout.split())
        if name in ONE_MODEL:
            assert "-m NAME, --model NAME" in out, name
            assert f"a folder below WORKDIR/models (default: {cli_common.DEFAULT_MODEL})" \
                in out, name
        elif name == "publish":
            assert "-m NAME, --model NAME" in out and "WORKDIR/models" in out
            assert "repeatable; default: every model of WORKDIR" in out
        else:
            assert "--model" not in out, name


def test_exit_status_table_matches_the_constants():
    rows = table_rows(doc_section("Exit status"))
    documented = {int(row[0]): (row[1].strip("`"), row[2]) for row in rows}
    constants = {getattr(cli_common, name): name for name in dir(cli_common)
                 if name.startswith("EXIT_") and isinstance(getattr(cli_common, name), int)}
    assert {status: name for status, (name, _) in documented.items()} == constants
    assert sorted(documented) == sorted(cli_common.EXIT_STATUSES)
    for status, (_, meaning) in documented.items():
        assert meaning.startswith(cli_common.EXIT_STATUSES[status]), status
    assert constants[2] == "EXIT_USAGE", "2 is argparse's status for a usage error"


def test_usage_errors_exit_2(tmp_path):
    work = tmp_path / "work"
    commands = {name: (name, work, "--no-such-option") for name in STAGES}
    commands |= {
        "verbose and quiet": ("-v", "embed", work, "-q"),
        "no stage": (),
        "ingest without source": ("ingest", work),
        "count below 1": ("neighbours", work, "--k", "0"),
        "missing config file": ("train", work, "--config", tmp_path / "none.json"),
        "refused value": ("train", work, "--width", "2"),
    }
    for name, proc in run_all(commands).items():
        assert proc.returncode == cli_common.EXIT_USAGE == 2, (name, proc.stderr)
        assert "error" in proc.stderr or "usage" in proc.stderr, name


def test_failures_exit_1_with_an_error_line(tmp_path, tiny_workdir):
    empty = tmp_path / "empty"
    empty.mkdir()
    ingested = tiny_workdir.root
    commands = {  # stage -> (command, what the message says)
        "train": (("train", empty), "run `vo-similarity ingest"),
        "tune": (("tune", empty), "run `vo-similarity ingest"),
        "embed": (("embed", ingested, "--model", "untrained"), "run `vo-similarity train"),
        "evaluate": (("evaluate", ingested), "run `vo-similarity train"),
        "neighbours": (("neighbours", ingested), "run 'vo-similarity embed'"),
        "publish": (("publish", ingested, "--gavo-rc", tmp_path / "no-gavo.rc"),
                    "no DaCHS settings file"),
    }
    procs = run_all({name: command for name, (command, _) in commands.items()})
    for name, proc in procs.items():
        assert proc.returncode == cli_common.EXIT_FAILURE == 1, (name, proc.stderr)
        assert f"vo-similarity {name}: error: " in proc.stderr, name
        assert commands[name][1] in proc.stderr, (name, proc.stderr)
        assert "Traceback" not in proc.stderr, name


def test_ingest_of_an_empty_folder_fails_and_names_it(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("no image")
    procs = run_all({"empty": ("ingest", tmp_path / "w1", "--folder", empty),
                     "junk": ("ingest", tmp_path / "w2", "--folder", junk)})
    for name, folder, why in (("empty", empty, "the folder holds no file"),
                              ("junk", junk, "all 1 inputs were rejected")):
        proc = procs[name]
        assert proc.returncode == cli_common.EXIT_FAILURE, proc.stderr
        assert f"vo-similarity ingest: error: no image in {folder}: {why}" in proc.stderr
    for work in (tmp_path / "w1", tmp_path / "w2"):
        assert not (work / "manifest.ecsv").exists()
        assert not (work / "contact_sheet.png").exists()


def _png_folder(folder: Path, n: int = 2) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (24, 24), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_ingest_with_rejected_inputs_exits_3(tmp_path):
    folder = _png_folder(tmp_path / "in")
    (folder / "notes.txt").write_text("no image")
    proc = vo_similarity("ingest", tmp_path / "work", "--folder", folder, "--size", "16")
    assert proc.returncode == cli_common.EXIT_REJECTED == 3, proc.stderr
    assert "ingested 2 images" in proc.stdout and "rejected 1 inputs" in proc.stdout
    assert (tmp_path / "work" / "manifest.ecsv").is_file()


def test_verbosity_shows_our_messages_only(tmp_path):
    folder = _png_folder(tmp_path / "in")
    (folder / "notes.txt").write_text("no image")  # its rejection is logged at DEBUG
    ingest = ("--folder", folder, "--size", "16")
    runs = {
        "default": ("ingest", tmp_path / "w0", *ingest),
        "-v before": ("-v", "ingest", tmp_path / "w1", *ingest),
        "-v after": ("ingest", tmp_path / "w2", *ingest, "--verbose"),
        "-vv": ("-v", "ingest", tmp_path / "w3", *ingest, "-v"),
        "-q": ("ingest", tmp_path / "w4", *ingest, "-q"),
    }
    expected = {"default": set(), "-q": set(), "-v before": {"INFO"}, "-v after": {"INFO"},
                "-vv": {"INFO", "DEBUG"}}
    for name, proc in run_all(runs).items():
        assert proc.returncode == cli_common.EXIT_REJECTED, (name, proc.stderr)
        assert "ingested 2 images" in proc.stdout, name  # the result, at every verbosity
        logged = [line for line in proc.stderr.splitlines() if line.strip()]
        # PIL logs every PNG chunk it reads at DEBUG: never shown
        assert not [line for line in logged if "PIL" in line], (name, logged[:5])
        ours = [line for line in logged if " vo_similarity." in line]
        assert ours == logged, (name, logged[:5])
        assert {line.split()[2].rstrip(":") for line in ours} == expected[name], name
