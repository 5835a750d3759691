"""Ma et al. (2017) NRQM: features on a real image (vs pyiqa), forest evaluation, missing model."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from benchmark.metrics import _nrqm_features as feats
from benchmark.metrics.niqe import _matlab_imresize, _pirm_y
from benchmark.metrics.nrqm import MaNRQM, _Forest, load_nrqm_model, ma_score, nrqm_available
from benchmark.weights import MissingWeightsError

SHARED = Path(__file__).resolve().parents[3].parent / "shared"
IMAGE = "kather/CRC-VAL-HE-7K/LYM/LYM-TCGA-FTVCYFDV.png"

# Ma features of IMAGE's PIRM Y (MATLAB rgb2ycbcr -> uint8, 4 px shaved; 216x216) from pyiqa 0.1.16
# internals, which need no trained model (scratch env outside the project, see test_niqe.py):
#     img = torch.from_numpy(Y)[None, None].double(); pyr = nrqm_arch.get_gauss_pyramid(img / 255)
#     F1 = cat([nrqm_arch.block_dct(im) for im in pyr]); F2 = nrqm_arch.global_gsm(img)
#     F3 = cat([svd(im2col(im, 5, 'distinct')).S for im in pyr])
# pyiqa departs from the official MATLAB code in documented places (see _nrqm_features); the
# tests compare what coincides, and emulate pyiqa's choice (pooling, ReLU) where it does not.
F1 = [0.3128499973, 0.503645446, 2.557861666, 1.777456177, 0.5285315863, 0.1537697654, 0.3907328218,
      0.7403757703, 2.020310289, 1.299512234, 0.3226952858, 0.08669830593, 0.385676469, 1.171611109,
      2.020326891, 1.079431018, 0.2557810696, 0.05829845311]
F2 = [2.041000128, 2.084000111, 2.057999849, 2.009000063, 2.032000065, 2.072000027, 2.101999998,
      2.18599987, 2.273999929, 2.198999882, 2.177000046, 2.111999989, 0.5290000439, 0.5199999809,
      0.5159999728, 0.5059999824, 0.5099999905, 0.5230000019, 0.523975089, 0.5299157663, 0.5541022275,
      0.5653837086, 0.5501229167, 0.5321382702, 0.1095281148, 0.106159537, 0.1122972994, 0.1163168732,
      0.112754869, 0.1100862323, 0.8401904618, 0.6313443992, 0.5426023677, 0.4395337288, 0.2497026738,
      0.84642416, 0.632496225, 0.5327910484, 0.4293582931, 0.8474013401, 0.6333590132, 0.5376175686,
      0.8461215628, 0.6365483718, 0.8460170397]
F3 = [146.9839082, 17.41989718, 16.67811888, 9.653987047, 8.769487867, 8.582921956, 5.008054038,
      4.769397496, 4.292516682, 3.853508325, 2.797903487, 2.532612434, 2.130960899, 1.8576246,
      1.516084188, 1.456111879, 1.344582118, 1.198255937, 0.867612134, 0.8077970751, 0.7900959445,
      0.6535992958, 0.4397006469, 0.4112638721, 0.2747637224, 71.8701559, 11.13431378, 10.55933449,
      6.067562834, 5.592853996, 4.852628111, 3.82407649, 3.449887156, 2.861223876, 2.534442246,
      2.392129905, 2.240724188, 2.204955517, 2.080935611, 1.903977239, 1.776536957, 1.601843518,
      1.44636256, 1.392155291, 1.267897781, 1.255319201, 1.059130319, 0.9423867597, 0.8869606234,
      0.7439046877, 35.42541593, 4.966045003, 4.437715608, 3.137713014, 2.652301108, 2.525188879,
      2.223300711, 1.990248613, 1.972838508, 1.818481525, 1.754215489, 1.678497005, 1.552912938,
      1.4145133, 1.233380075, 1.198635557, 1.058583158, 1.024283853, 0.9082300762, 0.8479231165,
      0.8014310652, 0.7310147733, 0.6891367426, 0.6588847967, 0.584315092]
BAND6 = {5, 17, 34, 38, 41, 43, 44}  # features involving the finest 6th orientation (parent rule differs)


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    root = Path(os.environ.get("MIRBENCH_DATA", SHARED / "datasets"))
    arr = np.asarray(Image.open(root / IMAGE).convert("RGB"), dtype=np.float64) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)[None]


@pytest.fixture(scope="module")
def y(image) -> np.ndarray:
    return _pirm_y(image, 4)[0].numpy()


@pytest.fixture(scope="module")
def features(y):
    return feats.ma_features(y)


def test_feature_shapes_and_determinism(y, features):
    f1, f2, f3 = features
    assert (f1.shape, f2.shape, f3.shape) == ((18,), (45,), (75,))
    assert all(np.isfinite(f).all() for f in features)
    again = feats.ma_features(y.copy())
    assert all(a.tobytes() == b.tobytes() for a, b in zip(features, again))
    assert np.all(np.diff(f3[:25]) <= 0) and f3[0] > f3[25] > f3[50]  # singular values per level


def test_svd_and_dct_features_match_pyiqa(y, features):
    f1, _, f3 = features
    np.testing.assert_allclose(f3, F3, rtol=1e-6)  # pyiqa's float32 Gaussian kernel: ~3e-8
    np.testing.assert_allclose(f1[1::2][[0, 1, 3, 4, 6, 7]], np.array(F1)[1::2][[0, 1, 3, 4, 6, 7]],
                               atol=1e-7)  # the means; the top-10 % means pool differently:
    for level, im in enumerate(feats.gaussian_pyramid(y / 255.0)):  # pyiqa-style pooling of our blocks
        g, cv, ori = feats._dct_block_stats(im)
        n = len(g)
        p = F1[6 * level:6 * level + 6]
        assert abs(np.sort(g)[:math.ceil(0.1 * n) + 1].mean() - p[0]) < 1e-7
        assert abs(np.sort(cv)[math.floor(0.9 * n):].mean() - p[2]) < 1e-7
        assert abs(np.sort(ori)[math.floor(0.9 * n):].mean() - p[4]) < 1e-7
        # ours, as block_dct.m: lowest ceil(0.1 n), and from 1-based fix(0.9 n) to the end
        assert f1[6 * level] == pytest.approx(np.sort(g)[:math.ceil(0.1 * n)].mean(), abs=0)
        assert f1[6 * level + 2] == pytest.approx(np.sort(cv)[math.trunc(0.9 * n) - 1:].mean(), abs=0)


def _cs_relu(a, b) -> float:  # pyiqa clips ssim's contrast-structure map at 0; the official code does not
    a, mu_a, va = feats._local_stats(a)
    b, mu_b, vb = feats._local_stats(b)
    cov = feats._valid_filter(a * b) - mu_a * mu_b
    c2 = (0.03 * 255) ** 2
    return float(np.maximum((2 * cov + c2) / (va + vb + c2), 0).mean())


def test_gsm_features_match_pyiqa(y, features):
    f2 = features[1]
    shapes = [i for i in range(18) if i not in BAND6]  # subband / cross-scale GGD shapes
    np.testing.assert_allclose(f2[shapes], np.array(F2)[shapes], atol=1e-6)
    hi0, levels, _ = feats.sf_pyramid(y)
    cs_scales = [_cs_relu(b if b.shape == hi0.shape else _matlab_imresize(b, out_shape=hi0.shape), hi0)
                 for lvl in levels for b in lvl]
    np.testing.assert_allclose(cs_scales, F2[18:30], atol=1e-7)
    sub = feats.divisive_normalise(levels)
    pairs = [(i, j) for i in range(6) for j in range(i + 1, 6)]
    for k, (i, j) in enumerate(pairs):
        if 30 + k not in BAND6:
            assert abs(_cs_relu(sub[i], sub[j]) - F2[30 + k]) < 1e-7
            assert f2[30 + k] == feats.mean_cs(sub[i], sub[j])
    assert f2[18] < _cs_relu(levels[0][0], hi0)  # no ReLU here: negative cs values count


# --------------------------------------------------------------------------- the regression stage
def _tree(nodes, n_nodes=5):
    """nodes: list of (var 1-based, split, left 1-based, right 1-based) or ('leaf', value)."""
    dtypes = {"lDau": np.int32, "rDau": np.int32, "nodestatus": np.int8, "upper": float, "avnode": float,
              "mbest": np.int32}
    arr = {k: np.zeros(n_nodes, dt) for k, dt in dtypes.items()}
    for i, nd in enumerate(nodes):
        if nd[0] == "leaf":
            arr["nodestatus"][i], arr["avnode"][i] = -1, nd[1]
        else:
            arr["mbest"][i], arr["upper"][i], arr["lDau"][i], arr["rDau"][i] = nd
            arr["nodestatus"][i] = -3
    return arr


def _forest(trees, coef=(0.0, 0.0), names=None):
    cols = {k: np.stack([t[k] for t in trees], axis=1) for k in trees[0]}
    rec = {"lDau": cols["lDau"], "rDau": cols["rDau"], "nodestatus": cols["nodestatus"],
           "nrnodes": np.array([[cols["lDau"].shape[0]]], np.int32), "upper": cols["upper"],
           "avnode": cols["avnode"], "mbest": cols["mbest"],
           "ndtree": np.array([[5] * len(trees)], np.int32), "ntree": np.array([[len(trees)]], np.int32),
           "coef": np.array([list(coef)])}
    return rec if names is None else {n: v for n, v in zip(names, rec.values())}


def write_synthetic_model(path: Path, f1, f2, f3, positional: bool = False) -> float:
    """A 3-forest model in the NRQM_model.mat layout whose prediction for (f1, f2, f3) is known:
    returns that prediction, derived by hand below."""
    names = [f"field{i}" for i in range(11)] if positional else None
    rf1 = _forest([_tree([(1, f1[0], 2, 3), ("leaf", 3.0), ("leaf", 99.0)]),           # x == split -> left: 3
                   _tree([(18, f1[17] - 1e-9, 2, 3), ("leaf", 99.0), (2, f1[1] + 1.0, 4, 5),
                          ("leaf", 5.0), ("leaf", 99.0)])], names=names)               # right, left: 5
    rf2 = _forest([_tree([("leaf", 6.0)]),                                             # root leaf: 6
                   _tree([(45, f2[44] + 0.5, 2, 3), ("leaf", 2.0), ("leaf", 99.0)])], names=names)  # 2
    rf3 = _forest([_tree([(75, f3[74] - 1.0, 2, 3), ("leaf", 99.0), ("leaf", 9.0)]),  # right: 9
                   _tree([(1, f3[0], 2, 3), (26, f3[25], 4, 5), ("leaf", 99.0), ("leaf", 1.0),
                          ("leaf", 99.0)])], names=names)                              # left, left: 1
    rf = np.empty((1, 3), dtype=object)
    rf[0, 0], rf[0, 1], rf[0, 2] = rf1, rf2, rf3
    linear = np.array([[0.5], [0.25], [0.5], [1.0]])
    scipy.io.savemat(path, {"model": {"linear": linear, "rf": rf}})
    s1, s2, s3 = (3.0 + 5.0) / 2, (6.0 + 2.0) / 2, (9.0 + 1.0) / 2
    return 0.5 + 0.25 * s1 + 0.5 * s2 + 1.0 * s3  # [1 s1 s2 s3] * linear = 8.5


@pytest.mark.parametrize("positional", [False, True])
def test_forest_prediction_equals_hand_traversal(tmp_path, features, positional):
    path = tmp_path / "NRQM_model.mat"
    expected = write_synthetic_model(path, *features, positional=positional)
    linear, forests = load_nrqm_model(path)
    assert expected == 8.5 and len(forests) == 3 and linear.tolist() == [0.5, 0.25, 0.5, 1.0]
    assert [fo.predict(f) for fo, f in zip(forests, features)] == [4.0, 4.0, 5.0]


def test_metric_end_to_end_with_model_file(tmp_path, monkeypatch, image, features):
    weights = tmp_path / "w"
    (weights / "nrqm").mkdir(parents=True)
    expected = write_synthetic_model(weights / "nrqm" / "NRQM_model.mat", *features)
    monkeypatch.setenv("MIRBENCH_WEIGHTS", str(weights))
    assert nrqm_available()
    m = MaNRQM()
    m.update(image, image, torch.tensor([0]))
    assert m.compute().item() == expected
    linear, forests = load_nrqm_model(weights / "nrqm" / "NRQM_model.mat")
    assert ma_score(_pirm_y(image, 4)[0].numpy(), linear, forests) == expected


def test_bias_correction_as_regRF_predict():
    t = _tree([("leaf", 2.0)])
    base = dict(left=t["lDau"][:, None] - 1, right=t["rDau"][:, None] - 1,
                terminal=t["nodestatus"][:, None] == -1, split=t["upper"][:, None],
                value=t["avnode"][:, None], var=t["mbest"][:, None] - 1)
    assert _Forest(**base, coef=np.array([0.0, 0.0])).predict(np.zeros(3)) == 2.0
    assert _Forest(**base, coef=np.array([0.5, 2.0])).predict(np.zeros(3)) == 4.5


def test_missing_model_raises_clear_error():
    assert not nrqm_available()
    with pytest.raises(FileNotFoundError) as err:  # conftest points MIRBENCH_WEIGHTS to an empty dir
        MaNRQM()
    assert isinstance(err.value, MissingWeightsError)
    msg = str(err.value)
    expected_path = Path(os.environ["MIRBENCH_WEIGHTS"]) / "nrqm" / "NRQM_model.mat"
    assert str(expected_path) in msg and "chaoma99/sr-metric" in msg and "NRQM_model.mat" in msg
    with pytest.raises(MissingWeightsError, match="elsewhere.mat"):
        MaNRQM(model_path="/nonexistent/elsewhere.mat")
