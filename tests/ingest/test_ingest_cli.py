"""``vo-similarity ingest`` on the command line: options, summary, exit status."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from astropy.io import fits
from ingest_helpers import gaussian_image, write_fits

from vo_similarity.cli import main
from vo_similarity.cli_common import EXIT_FAILURE, EXIT_REJECTED
from vo_similarity.ingest.cli import parse_range
from vo_similarity.ingest.manifest import read_manifest
from vo_similarity.workdir import WorkDir


def test_all_inputs_rejected_is_a_failure_that_names_the_folder(tmp_path, capsys):
    folder = tmp_path / "junk"
    folder.mkdir()
    for i in range(101):
        (folder / f"f{i:03d}.txt").write_text("no image")
    work = WorkDir(tmp_path / "work")
    assert main(["ingest", str(work.root), "--folder", str(folder), "--no-progress"]) \
        == EXIT_FAILURE
    assert len(work.ingest_report.read_text().splitlines()) == 101
    err = capsys.readouterr().err
    assert f"no image in {folder}" in err and "all 101 inputs were rejected" in err
    assert not work.manifest.exists() and not work.contact_sheet.exists()
    assert not work.pixels.exists()


def test_an_empty_folder_is_a_failure_that_names_it(tmp_path, capsys):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / ".hidden.fits").write_text("skipped")
    work = WorkDir(tmp_path / "work")
    assert main(["ingest", str(work.root), "--folder", str(folder), "--no-progress"]) \
        == EXIT_FAILURE
    assert f"no image in {folder}" in capsys.readouterr().err
    assert not work.root.exists()


def test_some_inputs_rejected_exits_3_after_writing_the_images(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    write_fits(folder / "good.fits", gaussian_image())
    (folder / "notes.txt").write_text("no image")
    work = WorkDir(tmp_path / "work")
    assert main(["ingest", str(work.root), "--folder", str(folder), "--size", "16",
                 "--no-progress"]) == EXIT_REJECTED == 3
    assert len(read_manifest(work.manifest)) == 1 and work.contact_sheet.is_file()
    assert "rejected 1 inputs" in capsys.readouterr().out


def test_cube_channels_limit_authority_and_size(tmp_path, fv_samples):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "cube.fits").write_bytes((fv_samples / "datacube.fit").read_bytes())
    write_fits(folder / "z.fits", gaussian_image())
    work = WorkDir(tmp_path / "work")
    status = main(["ingest", str(work.root), "--folder", str(folder), "--channels", "10:20",
                   "--size", "16", "--limit", "1", "--authority", "my.org", "--no-progress"])
    assert status == 0
    table = read_manifest(work.manifest)
    assert list(table["obs_publisher_did"]) == ["ivo://my.org/~?in/cube.fits"]
    assert np.load(work.pixels).shape == (1, 1, 16, 16)
    # the peak over channels 10..19 differs from the one over all channels
    cube = fits.getdata(folder / "cube.fits").astype(np.float32)
    assert not np.array_equal(np.nanmax(cube[10:20], 0), np.nanmax(cube, 0))
    all_work = WorkDir(tmp_path / "all")
    main(["ingest", str(all_work.root), "--folder", str(folder), "--size", "16", "--limit", "1",
          "--no-progress"])
    assert not np.array_equal(np.load(work.pixels), np.load(all_work.pixels))


def test_synthetic_sky(tmp_path):
    work = WorkDir(tmp_path / "work")
    assert main(["ingest", str(work.root), "--synthetic", "12", "--seed", "3",
                 "--no-progress"]) == 0
    table = read_manifest(work.manifest)
    assert len(table) == 12 and set(table["category"]) == {"synthetic"}
    assert all(table["label"]) and np.isfinite(table["s_ra"]).all()
    assert np.load(work.pixels).shape == (12, 1, 128, 128)


def test_usage_errors(tmp_path, capsys):
    assert main(["ingest", str(tmp_path / "w")]) == 2
    assert "no source given" in capsys.readouterr().err
    assert main(["ingest", str(tmp_path / "w"), "--folder", str(tmp_path / "nope")]) == 2
    assert "not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["ingest", str(tmp_path / "w"), "--channels", "a:b"])


@pytest.mark.parametrize("text,expected", [("3:7", (3, 7)), (":7", (None, 7)),
                                           ("3:", (3, None)), ("5", (5, 6))])
def test_parse_range(text, expected):
    assert parse_range(text) == expected
    with pytest.raises(argparse.ArgumentTypeError):
        parse_range("x")
