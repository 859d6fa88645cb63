"""The whole ingest run: bad inputs, work-directory files, rerun, resume after SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from ingest_helpers import celestial_cards, gaussian_image, write_fits
from PIL import Image

from vo_similarity.cli import main
from vo_similarity.cli_common import EXIT_REJECTED
from vo_similarity.ingest import manifest
from vo_similarity.ingest.folder import scan_folder
from vo_similarity.ingest.inputs import ImageInput
from vo_similarity.ingest.pipeline import NoImages, ingest
from vo_similarity.ingest.preprocess import PreprocessConfig
from vo_similarity.workdir import MANIFEST_COLUMNS, PIXELS_DIGEST, WorkDir, file_sha256


def make_bad_inputs(folder: Path) -> dict[str, str]:
    """One file per kind of bad input; returns name -> expected reason."""
    folder.mkdir(parents=True, exist_ok=True)
    trunc = write_fits(folder / "truncated.fits", gaussian_image(128))
    trunc.write_bytes(trunc.read_bytes()[:20000])
    write_fits(folder / "all_nan.fits", np.full((32, 32), np.nan, np.float32))
    write_fits(folder / "constant.fits", np.full((32, 32), 7, np.float32))
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column("flux", "E", array=np.arange(5.0))])]).writeto(folder / "table_only.fits")
    write_fits(folder / "one_pixel.fits", np.ones((1, 1), np.float32))
    (folder / "notes.txt").write_text("not an image at all\n")
    write_fits(folder / "no_spectral_axis.fits", np.ones((4, 32, 32), np.float32),
               CTYPE3="LINEAR")
    return {
        "truncated.fits": "truncated FITS file",
        "all_nan.fits": "all pixels are NaN",
        "constant.fits": "constant image",
        "table_only.fits": "only table HDUs",
        "one_pixel.fits": "too small",
        "notes.txt": "not an image",
        "no_spectral_axis.fits": "recognisable spectral axis",
    }


def make_good_inputs(folder: Path, n: int = 3, side: int = 64) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        cards = celestial_cards(ra=10.0 + i) | {"OBJECT": f"SRC{i}"}
        path = folder / f"good{i:03d}.fits"
        paths.append(write_fits(path, gaussian_image(side, seed=i), **cards))
    return paths


def read_manifest(work: WorkDir):
    return manifest.read_manifest(work.manifest)


def test_bad_inputs_each_get_one_line_and_the_run_goes_on(tmp_path, fv_samples, capsys):
    expected = make_bad_inputs(tmp_path / "in")
    for name in ("ngc1316r.fit", "datacube.fit"):
        (tmp_path / "in" / name).write_bytes((fv_samples / name).read_bytes())
    work = WorkDir(tmp_path / "work")
    status = main(["ingest", str(work.root), "--folder", str(tmp_path / "in"), "--no-progress"])
    assert status == EXIT_REJECTED
    lines = work.ingest_report.read_text().splitlines()
    assert len(lines) == len(expected)
    for line in lines:
        path, reason = line.split("\t")
        assert expected[Path(path).name] in reason
    table = read_manifest(work)
    assert list(table["obs_id"]) == ["in/datacube.fit", "in/ngc1316r.fit"]
    out = capsys.readouterr().out
    assert "ingested 2 images" in out and f"rejected {len(expected)} inputs" in out
    assert str(work.contact_sheet) in out


def test_work_directory_contract(tmp_path, fv_samples):
    folder = tmp_path / "in"
    make_good_inputs(folder, n=2)
    (folder / "ngc1316o.fit").write_bytes((fv_samples / "ngc1316o.fit").read_bytes())
    Image.fromarray(np.tile(np.arange(80, dtype=np.uint8) * 3, (40, 1))).save(folder / "z.png")
    extra = ImageInput(path=folder / "good000.fits", obs_id="mine/1", target_name="Given",
                       credit="me", category="test", label="blob")
    work = WorkDir(tmp_path / "work")
    result = ingest([*scan_folder(folder), extra], work, PreprocessConfig(size=32),
                    authority="example.org/arch", progress=False)
    assert result.n_images == 5 and not result.rejected
    table = read_manifest(work)
    assert table.colnames == list(MANIFEST_COLUMNS)
    assert list(table["image_id"]) == list(range(5))
    pixels = np.load(work.pixels)
    assert pixels.shape == (5, 1, 32, 32) and pixels.dtype == np.float16
    assert table.meta[PIXELS_DIGEST] == file_sha256(work.pixels)
    assert manifest.read_manifest_meta(work.manifest) == dict(table.meta)
    with pytest.raises(ValueError, match="not an ECSV file"):
        manifest.read_manifest_meta(work.contact_sheet)
    assert 0 <= pixels.min() and pixels.max() <= 1
    for i in range(5):
        assert work.preview(i).is_file()
    row = table[table["obs_id"] == "mine/1"][0]
    assert row["obs_publisher_did"] == "ivo://example.org/arch/~?mine/1"
    # given metadata wins, the header fills the gaps
    assert (row["target_name"], row["credit"], row["label"]) == ("Given", "me", "blob")
    assert row["s_ra"] == pytest.approx(10.0, abs=1e-3)
    ngc = table[table["obs_id"] == "in/ngc1316o.fit"][0]
    assert ngc["target_name"] == "NGC 1316" and ngc["s_dec"] == pytest.approx(-37.2, abs=0.1)
    png = table[table["obs_id"] == "in/z.png"][0]
    assert np.isnan(png["s_ra"]) and png["target_name"] == ""
    assert Image.open(work.contact_sheet).size[0] > 100
    assert work.ingest_report.read_text() == ""


def snapshot(work: WorkDir) -> tuple[bytes, bytes, list[bytes]]:
    previews = [p.read_bytes() for p in sorted(work.previews.glob("*.png"))]
    return work.manifest.read_bytes(), work.pixels.read_bytes(), previews


def test_rerun_is_idempotent_and_new_inputs_are_appended(tmp_path):
    make_good_inputs(tmp_path / "a", n=3)
    work = WorkDir(tmp_path / "work")
    inputs = scan_folder(tmp_path / "a")
    ingest(inputs, work, progress=False)
    first, first_pixels = snapshot(work), np.load(work.pixels)
    ingest(inputs, work, progress=False)
    assert snapshot(work) == first
    ingest([], work, progress=False)  # nothing new: the same directory
    assert snapshot(work) == first
    # the same files rewritten (new modification times) are the same inputs
    for p in (tmp_path / "a").iterdir():
        os.utime(p, (time.time() + 5, time.time() + 5))
    ingest(inputs, work, progress=False)
    assert snapshot(work) == first

    make_good_inputs(tmp_path / "b", n=2)
    ingest(scan_folder(tmp_path / "b") + inputs, work, progress=False)
    table = read_manifest(work)
    assert list(table["obs_id"]) == [f"a/good{i:03d}.fits" for i in range(3)] + [
        f"b/good{i:03d}.fits" for i in range(2)]
    assert list(table["image_id"]) == list(range(5))
    np.testing.assert_array_equal(np.load(work.pixels)[:3], first_pixels)


def test_duplicate_obs_id_is_reported(tmp_path):
    paths = make_good_inputs(tmp_path / "a", n=2)
    work = WorkDir(tmp_path / "work")
    result = ingest([ImageInput(paths[0], "x"), ImageInput(paths[1], "x")], work, progress=False)
    assert result.n_images == 1
    assert "duplicate obs_id 'x'" in work.ingest_report.read_text()


def _journal_entries(work: WorkDir) -> int:
    return len(list(work.ingest_journal.glob("*/*.npz")))


def test_no_image_raises_and_leaves_an_earlier_work_directory_as_it_was(tmp_path):
    fresh = WorkDir(tmp_path / "fresh")
    with pytest.raises(NoImages, match="nothing to ingest"):
        ingest([], fresh, progress=False)
    assert not fresh.manifest.exists() and not fresh.contact_sheet.exists()
    junk = tmp_path / "junk.txt"
    junk.write_text("no image")
    with pytest.raises(NoImages, match="all 1 inputs were rejected"):
        ingest([ImageInput(junk, "junk")], fresh, progress=False)
    assert fresh.ingest_report.read_text().startswith(str(junk))
    assert not fresh.manifest.exists() and not fresh.pixels.exists()


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path):
    n = 60
    make_good_inputs(tmp_path / "in", n=n, side=512)
    killed = WorkDir(tmp_path / "killed")
    cmd = [sys.executable, "-m", "vo_similarity", "ingest", str(killed.root),
           "--folder", str(tmp_path / "in"), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while _journal_entries(killed) < 5 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = _journal_entries(killed)
    assert 5 <= done < n, "the run was not killed half-way"
    assert not killed.manifest.exists() and not killed.pixels.exists()

    assert main(["ingest", str(killed.root), "--folder", str(tmp_path / "in"),
                 "--no-progress"]) == 0
    clean = WorkDir(tmp_path / "clean")
    ingest(scan_folder(tmp_path / "in"), clean, progress=False)
    a, b = read_manifest(killed), read_manifest(clean)
    assert len(a) == n and len(set(a["obs_id"])) == n
    assert list(a["obs_id"]) == list(b["obs_id"])
    np.testing.assert_array_equal(np.load(killed.pixels), np.load(clean.pixels))
    leftovers = [p for p in killed.root.rglob("*") if ".tmp-" in p.name]
    assert leftovers == []
