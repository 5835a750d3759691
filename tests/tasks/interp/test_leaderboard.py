"""SSAN tables beside our rows: the paper's numbers per CREMI sample, mouse marked private, and the
trivial-baseline sentence decided by the numbers (not written in)."""
from tasks.interp.leaderboard import to_markdown


def _row(method, psnr, **kw):
    return {"method": method, "dataset": "cremi_triplet_c", "status": "ok", "psnr": psnr, "ssim": 0.3, "ie": 20.0,
            "dice": 0.5, "f1": 0.5, **kw}


def test_tables_show_paper_numbers_and_the_baseline_verdict():
    md = to_markdown([_row("average", 19.76), _row("ssan", 15.0, membrane_oracle_dice=0.47)], "smoke")
    assert "which beats every CREMI C PSNR the paper reports (best: 16.46 dB" in md
    for table in ("Table 1", "Table 3", "Table 4", "Table 5"):
        assert f"## SSAN {table}" in md
    assert "| SRDN (ours) | 15.00 | 0.3000 | 20.00 | 18.26 | 0.4374 | 16.79 | 0.3712 | 16.46 | 0.3575 | 28.38 |" in md
    assert "data not public" in md and "[0.47]" in md
    assert "| SSAN (ours) | 0.500 | 0.500 | 0.602 | 0.602 | 0.435 | 0.435 | 0.465 | 0.467 |" in md
    low = to_markdown([_row("average", 16.0)], "smoke")
    assert "does not beat" in low
