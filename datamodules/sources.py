"""Official sources of every dataset mirbench downloads, and the layout each must have once installed.

Every entry names the publisher's own URL(s), the published file name, and what the file must be:
its size and checksum where public material states them, and always a structural check (archive
members / installed files, or hdf5 keys) so that a file with no published checksum is still verified.
Checksums are never invented: where none could be verified the field is ``None``.

Where the numbers come from (all read in public code; the files themselves were not downloaded here):

* Zenodo record 1214456 (Kather, Halama, Marx 2018; CC BY 4.0): ``NCT-CRC-HE-100K.zip`` 11,690,284,003 B,
  md5 6fd702d1...; ``CRC-VAL-HE-7K.zip`` 800,276,929 B, md5 2fd1651b... -- the md5s Zenodo lists, quoted
  with these sizes by several independent download scripts.  (One kaiko-ai/eva version attaches md5
  035777cf... to NCT-CRC-HE-100K.zip; other eva versions and the scripts above give it to
  ``NCT-CRC-HE-100K-NONORM.zip``, which this project does not use.)  Image counts 100,000 / 7,180
  .tif patches in nine class folders: the record's description.
* Zenodo record 53169 (Kather et al. 2016; CC BY 4.0): ``Kather_texture_2016_image_tiles_5000.zip``,
  258,098,431 B, sha256 936d0b95... -- tensorflow/datasets url_checksums/colorectal_histology.txt.
  5,000 tiles, 625 in each of 8 class folders 01_TUMOR..08_EMPTY.
* CRCHistoPhenotypes_2016_04_28.zip (Warwick TIA lab, research use only): no published size or checksum;
  verified by its layout: 100 ``Detection/imgN/imgN.bmp`` + ``imgN_detection.mat``.  The file has been
  served from two Warwick paths over the years; both are tried.  If the host answers with a web page
  (e.g. a sign-in form) the downloader says so and names the manual route.
* cremi.org (MICCAI 2016 CREMI challenge): ``sample_{A,B,C}_20160501.hdf`` sha256 4c563d1b... / 887e8552...
  / 2874496f... -- constantinpape/torch-em ``torch_em/data/datasets/cremi.py``.  The padded and test
  volumes have no published checksum; they are verified by their hdf5 keys.
"""
from __future__ import annotations

from dataclasses import dataclass

ZENODO_NCT = "https://zenodo.org/records/1214456/files"
ZENODO_TEXTURE = "https://zenodo.org/records/53169/files"
WARWICK = ("https://warwick.ac.uk/fac/sci/dcs/research/tia/data/crchistolabelednucleihe",
           "https://warwick.ac.uk/fac/cross_fac/tia/data/crchistolabelednucleihe")
CREMI = "https://cremi.org/static/data"


@dataclass(frozen=True)
class RemoteFile:
    """One published file and the checks that make it trusted.

    ``expect``: (glob relative to the dataset folder, exact count or None for "at least one"); checked
    on the archive's member list before anything is extracted and on disk afterwards.  For a plain
    (non-archive) file, ``hdf5_keys`` lists datasets the hdf5 file must hold.  ``installs`` is the
    path (relative to the dataset folder) whose presence means this file is already installed.
    """

    filename: str
    urls: tuple[str, ...]
    installs: str
    size: int | None = None
    md5: str | None = None
    sha256: str | None = None
    archive: bool = True
    expect: tuple[tuple[str, int | None], ...] = ()
    hdf5_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetSource:
    """A downloadable dataset: its folder under $MIRBENCH_DATA and the files that fill it."""

    key: str
    label: str
    folder: str
    homepage: str
    licence: str
    files: tuple[RemoteFile, ...]
    note: str = ""


def _zenodo(base: str, name: str) -> tuple[str, ...]:
    return (f"{base}/{name}?download=1",)


def _cremi(name: str, keys: tuple[str, ...], sha256: str | None = None) -> RemoteFile:
    quoted = name.replace("+", "%2B")          # cremi.org serves the '+' of the test volumes URL-encoded
    return RemoteFile(name, (f"{CREMI}/{quoted}",), installs=name, sha256=sha256, archive=False,
                      hdf5_keys=keys)


_TRAIN_KEYS = ("volumes/raw", "volumes/labels/neuron_ids")
_TEST_KEYS = ("volumes/raw",)

SOURCES: dict[str, DatasetSource] = {
    "kather": DatasetSource(
        key="kather", label="Kather colorectal H&E patches (NCT-CRC-HE-100K, CRC-VAL-HE-7K, texture 2016)",
        folder="kather", homepage="https://zenodo.org/records/1214456 and https://zenodo.org/records/53169",
        licence="CC BY 4.0",
        files=(
            RemoteFile("NCT-CRC-HE-100K.zip", _zenodo(ZENODO_NCT, "NCT-CRC-HE-100K.zip"),
                       installs="NCT-CRC-HE-100K", size=11_690_284_003, md5="6fd702d11df6292bc054397ae038a464",
                       expect=(("NCT-CRC-HE-100K/*/*.tif", 100_000),)),
            RemoteFile("CRC-VAL-HE-7K.zip", _zenodo(ZENODO_NCT, "CRC-VAL-HE-7K.zip"),
                       installs="CRC-VAL-HE-7K", size=800_276_929, md5="2fd1651b4f94ebd818ebf90ad2b6ce06",
                       expect=(("CRC-VAL-HE-7K/*/*.tif", 7_180),)),
            RemoteFile("Kather_texture_2016_image_tiles_5000.zip",
                       _zenodo(ZENODO_TEXTURE, "Kather_texture_2016_image_tiles_5000.zip"),
                       installs="Kather_texture_2016_image_tiles_5000", size=258_098_431,
                       sha256="936d0b95ae0f04f1f7b18a2b7e8c55776c3e887d102f645bcee752d1a6626a32",
                       expect=(("Kather_texture_2016_image_tiles_5000/*/*.tif", 5_000),)),
        )),
    "crchisto": DatasetSource(
        key="crchisto", label="CRCHistoPhenotypes (Sirinukunwattana et al., IEEE TMI 2016)", folder="crchisto",
        homepage="https://warwick.ac.uk/fac/cross_fac/tia/data/crchistolabelednucleihe",
        licence="research use only; cite Sirinukunwattana et al., IEEE TMI 2016",
        files=(
            RemoteFile("CRCHistoPhenotypes_2016_04_28.zip",
                       tuple(f"{w}/crchistophenotypes_2016_04_28.zip" for w in WARWICK),
                       installs="CRCHistoPhenotypes_2016_04_28",
                       expect=(("CRCHistoPhenotypes_2016_04_28/Detection/img*/img*_detection.mat", 100),
                               ("CRCHistoPhenotypes_2016_04_28/Detection/img*/img*.bmp", 100),
                               ("CRCHistoPhenotypes_2016_04_28/Classification/img*/img*_*.mat", None))),
        ),
        note="If the Warwick host asks for a sign-in, download the zip in a browser and pass it with "
             "`python -m datamodules.download crchisto --file PATH`."),
    "cremi": DatasetSource(
        key="cremi", label="CREMI labelled training volumes A, B, C (125x1250x1250, 40x4x4 nm)", folder="cremi",
        homepage="https://cremi.org/data/", licence="CREMI challenge data terms",
        files=(
            _cremi("sample_A_20160501.hdf", _TRAIN_KEYS,
                   "4c563d1b78acb2bcfb3ea958b6fe1533422f7f4a19f3e05b600bfa11430b510d"),
            _cremi("sample_B_20160501.hdf", _TRAIN_KEYS,
                   "887e85521e00deead18c94a21ad71f278d88a5214c7edeed943130a1f4bb48b8"),
            _cremi("sample_C_20160501.hdf", _TRAIN_KEYS,
                   "2874496f224d222ebc29d0e4753e8c458093e1d37bc53acd1b69b19ed1ae7052"),
        )),
    "cremi_padded": DatasetSource(
        key="cremi_padded", label="CREMI padded training volumes A, B, C (raw 200x3072x3072)", folder="cremi",
        homepage="https://cremi.org/data/", licence="CREMI challenge data terms",
        files=tuple(_cremi(f"sample_{s}_padded_20160501.hdf", _TRAIN_KEYS) for s in "ABC"),
        note="SSAN (BioData Mining 14:10, \"Dataset and preprocessing\") builds cremi_triplet from CREMI's padded volumes (200 sections of "
             "3072x3072)."),
    "cremi_test": DatasetSource(
        key="cremi_test", label="CREMI test volumes A+, B+, C+ (raw only, 125x1250x1250)", folder="cremi",
        homepage="https://cremi.org/data/", licence="CREMI challenge data terms",
        files=tuple(_cremi(f"sample_{s}+_20160601.hdf", _TEST_KEYS) for s in "ABC")),
    "cremi_test_padded": DatasetSource(
        key="cremi_test_padded", label="CREMI padded test volumes A+, B+, C+ (raw only, 200x3072x3072)",
        folder="cremi", homepage="https://cremi.org/data/", licence="CREMI challenge data terms",
        files=tuple(_cremi(f"sample_{s}+_padded_20160601.hdf", _TEST_KEYS) for s in "ABC")),
}

# `make data DATASET=all`: what the benchmark's datasets read (the CREMI test volumes are opt-in).
GROUPS: dict[str, tuple[str, ...]] = {"all": ("kather", "crchisto", "cremi", "cremi_padded")}
