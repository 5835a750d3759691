"""Every registered SR method: cites a paper present in reported.yaml, builds in both profiles, and
its paper profile stops with MissingWeightsError when a pretrained file it needs is absent; every
PathImgSR row of MASRGAN's Tables 1-3 trains under the one Table protocol."""
import dataclasses

import pytest

from benchmark.reported import load_reported
from benchmark.specs import FIDELITIES, BuildContext
from benchmark.weights import MissingWeightsError
from tasks.sr.protocol import MASRGAN_PAPER, MASRGAN_SMOKE
from tasks.sr.registry import DATASETS, METHODS

REPORTED_METHODS = {(e["paper"], e["method"]) for e in load_reported()["entries"]}
BUILD_TIME_WEIGHTS = {"vgg19", "vgg16"}   # loaded by the builders; the rest (nrqm) by the runner


@pytest.mark.parametrize("key", sorted(METHODS))
def test_method_is_registered_consistently(key):
    spec = METHODS[key]
    assert spec.datasets and all(d in DATASETS for d in spec.datasets)
    assert spec.paper in load_reported()["papers"]
    assert spec.fidelity in FIDELITIES and "nrqm" in spec.needs      # PI as the papers report it needs Ma
    if spec.fidelity != "faithful":
        assert spec.fidelity_note, f"{key}: a {spec.fidelity} row must say what"
    if spec.kind != "training-free" and spec.protocol == "table":
        assert (spec.paper, key) in REPORTED_METHODS, f"{key} has no reported number in {spec.paper}"
    if spec.protocol != "table":
        assert "own recipe" in spec.label and not spec.table.startswith("Table")
    for other in (spec.init_from, spec.same_as):
        assert other is None or (other in METHODS and set(spec.datasets) <= set(METHODS[other].datasets))


def test_same_configuration_rows_are_one_run_and_gans_start_from_masrnet():
    assert METHODS["masrgan_d_patchgan"].same_as == "masrgan" and METHODS["masrnet_att_mix"].same_as == "masrnet"
    for key in ("masrgan", "masrgan_d_vgg16", "masrgan_d_vgg128", "masrgan_d_patchgan"):
        assert METHODS[key].init_from == "masrnet"


@pytest.mark.parametrize("key", sorted(k for k, s in METHODS.items() if set(s.needs) & BUILD_TIME_WEIGHTS))
def test_paper_profile_needs_its_pretrained_files(key, tmp_path):
    ds = METHODS[key].datasets[0]
    ctx = BuildContext("sr", ds, "paper", DATASETS[ds].scale, 3, tmp_path / "no-weights")
    with pytest.raises(MissingWeightsError, match=METHODS[key].needs[0]):
        METHODS[key].build(ctx)


@pytest.mark.parametrize("key", sorted(METHODS))
def test_smoke_build_is_small_and_plans_training(key, tmp_path):
    ds = METHODS[key].datasets[0]
    module, plan = METHODS[key].build(BuildContext("sr", ds, "smoke", DATASETS[ds].scale, 3, tmp_path))
    n = sum(p.numel() for p in module.inference_net().parameters())
    assert n < 500_000, f"smoke {key} has {n} parameters"
    assert (plan.max_steps == 0) == (METHODS[key].kind == "training-free")


def _paper_plan(key, monkeypatch, tmp_path):
    """The paper-profile TrainPlan and lr schedule of a method, built with the VGG loaders stubbed (no weights)."""
    import tasks.common.losses as losses
    monkeypatch.setattr(losses, "require", lambda *a, **k: (_ for _ in ()).throw(FileNotFoundError()))
    real_init = losses.VGGFeatures.__init__

    def lenient(self, *a, **k):
        real_init(self, *a, **{**k, "allow_random": True})
    monkeypatch.setattr(losses.VGGFeatures, "__init__", lenient)
    ctx = BuildContext("sr", "pathimgsr_x4", "paper", 4, 3, tmp_path)
    return METHODS[key].build(ctx)


TABLE_ROWS = sorted(k for k, s in METHODS.items() if s.paper == "masrgan" and s.protocol == "table"
                    and s.kind != "training-free" and s.same_as is None)


@pytest.mark.parametrize("key", TABLE_ROWS)
def test_every_table_row_trains_under_the_one_protocol(key, monkeypatch, tmp_path):
    """MASRGAN Sec. 4.2: batch 16, lr 1e-4 halved every 2000 iterations; same iterations and patch."""
    p = MASRGAN_PAPER
    module, plan = _paper_plan(key, monkeypatch, tmp_path)
    assert (plan.batch_size, plan.patch_size) == (p.batch, p.patch)
    hp = module.hparams
    assert hp.lr == p.lr and hp.gamma == 0.5
    gan = hasattr(module, "discriminator")
    if not gan:
        assert plan.max_steps == p.psnr_steps and tuple(hp.milestones) == p.psnr_milestones()
    elif METHODS[key].init_from:                      # from the trained MASRNet: the GAN phase only
        assert plan.max_steps == p.gan_steps or hp.pretrain_steps == p.psnr_steps
    else:                                             # own generator pre-trained under the protocol
        assert hp.pretrain_steps == p.psnr_steps and plan.max_steps == p.psnr_steps + p.gan_steps
        assert hp.restart_at == p.psnr_steps
    opt, sched = module._adam([__import__("torch").nn.Parameter(__import__("torch").zeros(1))])
    f = sched.lr_lambdas[0]
    assert [f(i) for i in (0, 1_999, 2_000, 19_999)] == [1.0, 1.0, 0.5, 0.5 ** 9]
    if gan and hp.pretrain_steps:
        assert [f(i) for i in (20_000, 21_999, 22_000, 39_999)] == [1.0, 1.0, 0.5, 0.5 ** 9]


def test_smoke_protocol_keeps_the_structure():
    assert dataclasses.asdict(MASRGAN_SMOKE).keys() == dataclasses.asdict(MASRGAN_PAPER).keys()
    assert MASRGAN_SMOKE.psnr_steps > MASRGAN_SMOKE.halve_every > 0


@pytest.mark.parametrize("key", [k for k in TABLE_ROWS if k.startswith(("esrgan", "spsr", "qegan", "wa_srgan", "masrgan"))])
def test_smoke_gan_phase_restarts_at_the_papers_lr(key, tmp_path):
    """Smoke's 10x lr is for the from-scratch PSNR phase; the GAN phase runs at the protocol's gan_lr."""
    p = MASRGAN_SMOKE
    module, plan = METHODS[key].build(BuildContext("sr", "pathimgsr_x4", "smoke", 4, 3, tmp_path))
    assert module.hparams.pretrain_steps == p.psnr_steps and plan.max_steps == p.psnr_steps + p.gan_steps
    f = module._schedule(__import__("torch").optim.SGD([__import__("torch").nn.Parameter(
        __import__("torch").zeros(1))], lr=module.hparams.lr)).lr_lambdas[0]
    lr = module.hparams.lr
    assert lr * f(0) == p.lr and lr * f(p.psnr_steps - 1) == p.lr / 2
    assert lr * f(p.psnr_steps) == pytest.approx(p.gan_lr) and p.gan_lr == MASRGAN_PAPER.gan_lr


def test_own_recipes_are_their_papers(monkeypatch, tmp_path):
    module, plan = _paper_plan("rcan_own", monkeypatch, tmp_path)
    assert (plan.max_steps, plan.patch_size) == (1_000_000, 192)
    module, plan = _paper_plan("esrgan_own", monkeypatch, tmp_path)
    f = module._schedule(__import__("torch").optim.SGD([__import__("torch").nn.Parameter(
        __import__("torch").zeros(1))], lr=module.hparams.lr)).lr_lambdas[0]
    lr = module.hparams.lr
    assert lr == 2e-4 and plan.max_steps == 1_400_000                          # ESRGAN: PSNR phase at 2e-4
    assert [lr * f(i) for i in (0, 200_000, 999_999)] == [2e-4, 1e-4, 2e-4 / 16]
    assert [lr * f(i) for i in (1_000_000, 1_050_000, 1_300_000)] == [1e-4, 5e-5, 1e-4 / 16]
