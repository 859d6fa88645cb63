"""The built-in real sample: the deep-sky photographs shipped with Stellarium.

Debian's ``stellarium-data`` package installs 555 PNG photographs of galaxies,
clusters and nebulae in ``/usr/share/stellarium/nebulae/default/``, with
``textures.json`` giving for each image its four sky corners (``worldCoords``,
J2000 RA/Dec in degrees, corners in the order of ``textureCoords`` (0,0), (1,0),
(1,1), (0,1)) and its credit (``imageCredits``: ``short``/``Short`` text and an
optional ``infoUrl``). ``catalog.dat`` beside them is Stellarium's deep-sky
catalogue (a gzipped Qt ``QDataStream``); its object types give each image a
science category.

For each image:

* centre (``s_ra``, ``s_dec``): the normalised mean of the corners' unit vectors;
* field of view ``s_fov``: twice the largest angular distance from the centre to
  a corner, i.e. the diameter of the smallest circle about the centre that holds
  the whole image;
* ``target_name``: the designation read from the file name (``m31.png`` →
  ``M 31``, ``n7000.png`` → ``NGC 7000``, ``sh2-101-vasey.png`` → ``Sh 2-101``)
  or, for the few named files, a name from :data:`NAMED`;
* ``category``: a coarse group (:data:`CATEGORIES`) of the catalogue type of the
  designated object, or from :data:`NAMED`; empty where unknown;
* ``credit``: the image's credit text, its info URL and any server credit.
"""

from __future__ import annotations

import functools
import gzip
import json
import logging
import math
import re
import struct
from pathlib import Path

import numpy as np

from vo_similarity.ingest.inputs import ImageInput

__all__ = ["DEFAULT_ROOT", "builtin_sample", "designation", "load_textures", "loads_tolerant"]

log = logging.getLogger(__name__)

#: Where Debian's ``stellarium-data`` puts the default nebula images.
DEFAULT_ROOT = Path("/usr/share/stellarium/nebulae/default")

# --------------------------------------------------------------------- tolerant JSON

_TOKEN = re.compile(
    r"""
    (?P<string>"(?:\\.|[^"\\])*")
  | (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<punct>[{}\[\]:,])
  | (?P<word>true|false|null)
  | (?P<space>\s+)
    """,
    re.VERBOSE | re.DOTALL,
)


def loads_tolerant(text: str) -> object:
    """Parse the relaxed JSON that Stellarium writes (no ``eval``).

    Accepts, beyond strict JSON: numbers such as ``-.97``, ``.5``, ``+1`` or
    ``1.``; trailing commas before ``]`` or ``}``; ``//`` and ``/* */`` comments.

    Raises:
        ValueError: on anything else that is not JSON, with line and column.
    """
    out: list[str] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            line = text.count("\n", 0, pos) + 1
            col = pos - text.rfind("\n", 0, pos)
            raise ValueError(f"unexpected {text[pos]!r} at line {line}, column {col}")
        kind, tok = m.lastgroup, m.group()
        pos = m.end()
        if kind in ("comment", "space"):
            continue
        if kind == "number":
            tok = repr(float(tok)) if re.search(r"[.eE]", tok) else str(int(tok))
        elif tok in "]}" and out and out[-1] == ",":
            out.pop()  # trailing comma
        out.append(tok)
    return json.loads("".join(out))


def load_textures(root: Path = DEFAULT_ROOT) -> list[dict]:
    """The image entries (``subTiles``) of ``root/textures.json``, with the server credit.

    Each entry is returned as in the file, plus ``"serverCredits"`` copied from
    the top level when the entry has none.
    """
    path = Path(root) / "textures.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: the built-in sample needs Debian's stellarium-data package "
            "(apt-get install stellarium-data)"
        )
    doc = loads_tolerant(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or not isinstance(doc.get("subTiles"), list):
        raise ValueError(f"{path}: no 'subTiles' list at the top level")  # noqa: TRY004 (bad file)
    server = doc.get("serverCredits")
    return [
        {**tile, "serverCredits": tile.get("serverCredits", server)} for tile in doc["subTiles"]
    ]


# --------------------------------------------------------------------- geometry


def _unit(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], -1)


def corners_to_circle(corners: list[list[float]]) -> tuple[float, float, float]:
    """Centre (RA, Dec) and diameter, all in degrees, of the circle around sky corners."""
    xyz = _unit(np.array([c[0] for c in corners], float), np.array([c[1] for c in corners]))
    mean = xyz.mean(axis=0)
    mean /= np.linalg.norm(mean)
    ra = math.degrees(math.atan2(mean[1], mean[0])) % 360.0
    dec = math.degrees(math.asin(float(np.clip(mean[2], -1.0, 1.0))))
    radius = np.degrees(np.arccos(np.clip(xyz @ mean, -1.0, 1.0))).max()
    return ra, dec, float(2.0 * radius)


# --------------------------------------------------------------------- names and categories

#: Stellarium type code (Nebula::NebulaType, catalogue version 3.x) → coarse category.
CATEGORIES: dict[int, str] = {
    **dict.fromkeys((0, 1, 2, 3, 4, 21, 22, 25, 34), "galaxy"),
    **dict.fromkeys((5, 8, 9), "star cluster"),
    6: "open cluster",
    7: "globular cluster",
    **dict.fromkeys((10, 14, 19, 20, 23, 24), "nebula"),
    **dict.fromkeys((11, 26, 27), "planetary nebula"),
    12: "dark nebula",
    13: "reflection nebula",
    **dict.fromkeys((15, 16, 17), "emission nebula"),
    **dict.fromkeys((18, 32), "supernova remnant"),
    33: "galaxy cluster",
}

#: Files whose names carry no catalogue number: stem prefix → (target, category).
NAMED: dict[str, tuple[str, str]] = {
    "GammaCygni": ("Gamma Cygni Nebula (IC 1318)", "emission nebula"),
    "Jones-Emberson1": ("Jones-Emberson 1", "planetary nebula"),
    "Medusa": ("Medusa Nebula (Abell 21)", "planetary nebula"),
    "abell31": ("Abell 31", "planetary nebula"),
    "abell33": ("Abell 33", "planetary nebula"),
    "abell39": ("Abell 39", "planetary nebula"),
    "abell85": ("CTB 1 (Abell 85)", "supernova remnant"),
    "barnard_loop": ("Barnard's Loop", "emission nebula"),
    "calabash": ("Calabash Nebula", "planetary nebula"),
    "cas": ("IC 59 / IC 63 (Gamma Cassiopeiae nebulae)", "emission nebula"),
    "cassiopeia_a": ("Cassiopeia A", "supernova remnant"),
    "coma_cluster": ("Coma Cluster", "galaxy cluster"),
    "darkshark": ("Dark Shark Nebula (LDN 1235)", "dark nebula"),
    "etaCarinae": ("Carina Nebula (NGC 3372)", "emission nebula"),
    "fornax_cluster": ("Fornax Cluster", "galaxy cluster"),
    "hercules_cluster": ("Hercules Cluster", "galaxy cluster"),
    "hydra_cluster": ("Hydra Cluster", "galaxy cluster"),
    "leo_cluster": ("Leo Cluster", "galaxy cluster"),
    "lmc": ("Large Magellanic Cloud", "galaxy"),
    "perseus_cluster": ("Perseus Cluster", "galaxy cluster"),
    "pleiades": ("Pleiades (M 45)", "open cluster"),
    "red_rectangle": ("Red Rectangle Nebula", "planetary nebula"),
    "rho": ("Rho Ophiuchi cloud complex", "nebula"),
    "smc": ("Small Magellanic Cloud", "galaxy"),
    "velasnr": ("Vela Supernova Remnant", "supernova remnant"),
    "virgo_cluster": ("Virgo Cluster", "galaxy cluster"),
    "wilds": ("Wild's Triplet (Arp 248)", "galaxy"),
}

# catalogue prefix in file names → (printed prefix, catalogue column in catalog.dat)
_PREFIXES = {
    "m": ("M ", "M"),
    "n": ("NGC ", "NGC"),
    "ic": ("IC ", "IC"),
    "u": ("UGC ", "UGC"),
    "p": ("PGC ", "PGC"),
    "barnard": ("B ", "B"),
    "sh2-": ("Sh 2-", "Sh2"),
    "ldn": ("LDN ", "LDN"),
    "lbn": ("LBN ", "LBN"),
    "rcw": ("RCW ", "RCW"),
    "vdb": ("vdB ", "VdB"),
}
_SUFFIX = re.compile(r"(?:-vasey|-dss|-sdss2?|-2mass|-trev|-darkskies|dumont|oleg|spano)$")
_DESIGNATION = re.compile(r"^(m|n|ic|u|p|barnard|sh2-|ldn|lbn|rcw|vdb)(\d+)(h?)(.*)$")


def designation(stem: str) -> tuple[str, str, int] | None:
    """Read a catalogue designation from an image file stem.

    Returns:
        (target name, catalogue, number), e.g. ``("NGC 4038/4039", "NGC", 4038)``
        for ``"n4038-9"``, or None when the stem names no catalogue object.
    """
    m = _DESIGNATION.match(_SUFFIX.sub("", stem))
    if m is None:
        return None
    prefix, number, _, rest = m.groups()
    printed, catalogue = _PREFIXES[prefix]
    target = f"{printed}{int(number)}"
    if rest.startswith("-") and prefix in ("n", "ic") and rest[1:].isdigit():
        other = rest[1:]
        if prefix == "n" and len(other) < len(number):  # n4038-9 → NGC 4038/4039
            other = number[: len(number) - len(other)] + other
        if prefix == "n":  # a pair of objects; IC tiles (ic2118-1) are parts of one
            target = f"{target}/{int(other)}"
    elif rest == "group":
        target += " group"
    elif rest and not re.fullmatch(r"-\d+", rest):
        return None
    return target, catalogue, int(number)


_CATALOGUE_COLUMNS = ("NGC", "IC", "M", "C", "B", "Sh2", "VdB", "RCW", "LDN", "LBN", "Cr", "Mel",
                      "PGC", "UGC")  # fmt: skip
_HEAD = struct.Struct(">IddddI")  # id, ra, dec, bmag, vmag, type
_MIDDLE = struct.Struct(">ddidddddd14I")  # axes, angle, z, z err, plx, plx err, dist, err, ids
_TWO = struct.Struct(">II")  # Arp, VV
_FIVE = struct.Struct(">5I")  # DWB, Tr, St, Ru, vdB-Ha


def _qstring(buf: bytes, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from(">I", buf, pos)
    pos += 4
    if n == 0xFFFFFFFF:
        return "", pos
    return buf[pos : pos + n].decode("utf-16-be"), pos + n


@functools.lru_cache(maxsize=4)
def catalogue_types(path: Path) -> dict[tuple[str, int], int]:
    """Stellarium's deep-sky catalogue as (catalogue, number) → type code.

    Reads ``catalog.dat`` (gzipped ``QDataStream``, double precision, format of
    Stellarium's ``Nebula::readDSO`` for catalogue versions 3.x: about 94 000
    objects, ~1.5 s); only the number columns listed in ``_CATALOGUE_COLUMNS``.
    """
    buf = gzip.decompress(Path(path).read_bytes())
    version, pos = _qstring(buf, 0)
    if not version.startswith("3."):
        raise ValueError(f"{path}: catalogue version {version!r}, this reader knows 3.x")
    _, pos = _qstring(buf, pos)  # edition
    types: dict[tuple[str, int], int] = {}
    while pos < len(buf):
        otype = _HEAD.unpack_from(buf, pos)[5]
        pos += _HEAD.size
        _, pos = _qstring(buf, pos)  # morphological type
        numbers = _MIDDLE.unpack_from(buf, pos)[9:]
        pos += _MIDDLE.size
        _, pos = _qstring(buf, pos)  # Ced
        pos += _TWO.size
        for _ in range(7):  # PK, PN G, SNR G, ACO, HCG, ESO, vdBH
            _, pos = _qstring(buf, pos)
        pos += _FIVE.size
        for name, number in zip(_CATALOGUE_COLUMNS, numbers):
            if number:
                types.setdefault((name, number), otype)
    if pos != len(buf):
        raise ValueError(f"{path}: records overrun the file ({pos} > {len(buf)} bytes)")
    return types


def _credit(tile: dict) -> str:
    credits = {k.lower(): v for k, v in (tile.get("imageCredits") or {}).items()}
    parts = [str(credits.get("short", "")).strip()]
    if credits.get("infoUrl".lower()):
        parts.append(str(credits["infourl"]).strip())
    server = tile.get("serverCredits")
    if isinstance(server, dict):
        server = "; ".join(str(v) for v in server.values() if v)
    if server:
        parts.append(f"server: {server}")
    return " — ".join(p for p in parts if p)


def _named(stem: str) -> tuple[str, str] | None:
    base = _SUFFIX.sub("", stem)
    for key in sorted(NAMED, key=len, reverse=True):
        if base == key or re.match(rf"^{re.escape(key)}[-_\d]", base):
            return NAMED[key]
    return None


def builtin_sample(root: Path = DEFAULT_ROOT) -> list[ImageInput]:
    """The built-in real sample: one :class:`ImageInput` per Stellarium nebula image.

    Args:
        root: the folder holding ``textures.json``, the PNG files and
            ``catalog.dat`` (Debian: :data:`DEFAULT_ROOT`).

    Returns:
        The images in the order of ``textures.json`` (555 for stellarium-data
        0.22), with ``obs_id = "stellarium/<file stem>"``. Entries without a
        file, duplicates and entries without corners are skipped with a warning.

    Raises:
        FileNotFoundError: when the package is not installed.
    """
    root = Path(root)
    tiles = load_textures(root)
    catalogue = root / "catalog.dat"
    types = catalogue_types(catalogue) if catalogue.is_file() else {}
    if not types:
        log.warning("%s missing: categories only for named images", catalogue)
    inputs: list[ImageInput] = []
    seen: set[str] = set()
    for tile in tiles:
        url = str(tile.get("imageUrl", ""))
        path = root / url
        if not url or not path.is_file():
            log.warning("textures.json names %r, which is not in %s: skipped", url, root)
            continue
        if url in seen:
            log.warning("textures.json names %r twice: kept the first", url)
            continue
        try:
            ra, dec, fov = corners_to_circle(tile["worldCoords"][0])
        except (KeyError, IndexError, TypeError, ValueError) as err:
            log.warning("%s: no usable worldCoords (%s): skipped", url, err)
            continue
        seen.add(url)
        stem = path.stem
        target, category = "", ""
        if (found := designation(stem)) is not None:
            target, cat, number = found
            category = CATEGORIES.get(types.get((cat, number), -1), "")
        elif (named := _named(stem)) is not None:
            target, category = named
        inputs.append(
            ImageInput(
                path=path,
                obs_id=f"stellarium/{stem}",
                target_name=target,
                s_ra=ra,
                s_dec=dec,
                s_fov=fov,
                category=category,
                credit=_credit(tile),
            )
        )
    unused = sorted({p.name for p in root.glob("*.png")} - seen)
    if unused:
        log.warning("%d PNG files in %s are not in textures.json: %s", len(unused), root, unused)
    log.info("built-in sample: %d images from %s", len(inputs), root)
    return inputs
