"""Leaderboards: markdown + CSV + JSON tables per dataset / paper table, beside the reported numbers,
plus a perception-distortion plot and cross-method sample grids.  One profile per file, never mixed:
``leaderboards/<task>.*`` holds the smoke profile, ``leaderboards/<task>.paper.*`` the paper profile.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from benchmark.reported import reported_for
from benchmark.results import ResultRecord, atomic_write_text, now
from benchmark.samples import method_grid

METRIC_COLS = [("psnr", "PSNR", 2), ("ssim", "SSIM", 4), ("niqe", "NIQE", 2), ("pi", "PI", 2),
               ("rmse", "RMSE", 2), ("psnr_region", "ROI PSNR", 2), ("ssim_region", "ROI SSIM", 4)]
COST_COLS = [("params_m", "Params (M)", 3), ("flops_g", "FLOPs (G)", 2), ("latency_ms", "Latency (ms)", 1)]
COMPARED = ("psnr", "ssim", "pi", "rmse", "psnr_region", "ssim_region")


def metric_cols(task: str) -> list[tuple[str, str, int]]:
    """The task registry's ``METRIC_COLS`` (key, header, decimals) where it sets one, else the SR set."""
    try:
        from benchmark.registry import load_task
        return list(getattr(load_task(task), "METRIC_COLS", METRIC_COLS))
    except (ValueError, ImportError):
        return METRIC_COLS


def stem(task: str, profile: str) -> str:
    return task if profile == "smoke" else f"{task}.{profile}"


def _pi(metrics: dict) -> float | None:
    if "ma" not in metrics or "niqe" not in metrics:
        return None  # never estimated: PI exists only where Ma's model was really run
    from benchmark.metrics.pi import pi_from_means
    return pi_from_means(metrics["ma"], metrics["niqe"])


def _notes(r: ResultRecord) -> str:
    t = r.train or {}
    out = []
    if t.get("fidelity") and t["fidelity"] != "faithful":
        out.append(t["fidelity"] + (f": {t['fidelity_note']}" if t.get("fidelity_note") else ""))
    if t.get("protocol") and t["protocol"] != "table":
        out.append(f"protocol: {t['protocol']}")
    if t.get("init_from"):
        out.append(f"starts from trained {t['init_from']}")
    if t.get("notes"):
        out.append(t["notes"])
    if t.get("resumed_at_iteration") is not None:
        out.append(f"resumed at iteration {t['resumed_at_iteration']}")
    if t.get("last_failure"):
        out.append(f"a later rerun failed ({t['last_failure'].split(':')[0]}); this is the last good result")
    return "; ".join(out)


def build_rows(records: list[ResultRecord]) -> list[dict]:
    rows = []
    for r in records:
        conv = r.convention or {}
        t = r.train or {}
        m = dict(r.metrics)
        if (pi := _pi(m)) is not None:
            m["pi"] = pi
        rep = reported_for(conv.get("reported_key", r.dataset.rsplit("_x", 1)[0]), r.scale, r.method)
        row = {"task": r.task, "profile": r.profile, "dataset": r.dataset, "dataset_label": conv.get("dataset_label", r.dataset),
               "scale": r.scale, "paper": r.paper, "table": r.table, "method": r.method, "label": r.label, "kind": r.kind,
               "status": r.status, "error": r.error, "n_images": m.get("n_images"),
               "convention": conv.get("description"), "ma_model": conv.get("ma_model", False),
               "fidelity": t.get("fidelity"), "fidelity_note": t.get("fidelity_note"), "protocol": t.get("protocol"),
               "notes": _notes(r), "steps": t.get("steps", 0), "global_batch": t.get("global_batch"),
               "resumed_at_iteration": t.get("resumed_at_iteration"), "last_failure": t.get("last_failure"),
               "wall_s": t.get("total_wall_s"), "commit": (r.env or {}).get("commit"),
               "hardware": (r.env or {}).get("hardware"), "cpu_isa": (r.env or {}).get("cpu_isa"),
               "threads": (r.env or {}).get("threads"), "devices": (r.env or {}).get("devices")}
        for k, _, _ in metric_cols(r.task):
            row[k] = m.get(k)
        for k, _, _ in COST_COLS:
            row[k] = (r.efficiency or {}).get(k)
        row["cost_input"] = (r.efficiency or {}).get("input")
        # a smoke learned row is a tiny network trained for seconds, not the paper's model: no delta
        compare = not (r.profile == "smoke" and r.kind != "training-free")
        for k in COMPARED:
            if k in rep:
                row[f"reported_{k}"] = rep[k]["value"]
                row[f"reported_{k}_source"] = f"{rep[k]['paper']} {rep[k]['table']}"
                row[f"delta_{k}"] = None if row.get(k) is None or not compare else row[k] - rep[k]["value"]
        rows.append(row)
    return rows


def alias_rows(task: str, rows: list[dict]) -> list[dict]:
    """Rows of methods declared ``same_as`` another: that run's numbers under this row's label/table."""
    try:
        from benchmark.registry import load_task
        methods = load_task(task).METHODS
    except (ValueError, ImportError):
        return []
    out = []
    for m, spec in methods.items():
        if not spec.same_as:
            continue
        for r in rows:
            if r["method"] == spec.same_as and r["dataset"] in spec.datasets and not r.get("same_as"):
                ref = methods[spec.same_as].label
                note = f"same run as {ref}" + (f"; {r['notes']}" if r["notes"] else "")
                out.append({**r, "method": m, "label": spec.label, "kind": spec.kind, "table": spec.table,
                            "paper": spec.paper, "same_as": spec.same_as, "notes": note})
    return out


def kept_rows(previous: dict | None, rows: list[dict], task: str) -> list[dict]:
    """Rows of the existing leaderboard that have no local result: kept (marked), never dropped."""
    if not previous or not previous.get("rows"):
        return []
    have = {(r["dataset"], r["method"]) for r in rows}
    try:
        from benchmark.registry import load_task
        known = set(load_task(task).METHODS)
    except (ValueError, ImportError):
        known = None
    out = []
    for r in previous["rows"]:
        if (r["dataset"], r["method"]) in have or r.get("same_as") or (known is not None and r["method"] not in known):
            continue
        mark = "kept from committed leaderboard" + (f" (commit {r['commit']})" if r.get("commit") else "")
        notes = r.get("notes") or ""
        row = {**r, "kept": True, "notes": notes if notes.startswith("kept from") else
               "; ".join(x for x in (mark, notes) if x)}
        if r.get("profile") == "smoke" and r.get("kind") != "training-free":  # same rule as build_rows
            row.update({k: None for k in r if k.startswith("delta_")})
        out.append(row)
    return out


def _sort_rows(task: str, rows: list[dict]) -> list[dict]:
    try:
        from benchmark.registry import load_task
        reg = load_task(task)
        ds, ms = list(reg.DATASETS), list(reg.METHODS)
    except (ValueError, ImportError):
        return rows
    rank = lambda key, order: order.index(key) if key in order else len(order)  # noqa: E731
    return sorted(rows, key=lambda r: (rank(r["dataset"], ds), rank(r["method"], ms)))


def _table_groups(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """One table per (dataset, paper table); the training-free rows head every table of their dataset."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        drows = [r for r in rows if r["dataset"] == ds]
        ref = [r for r in drows if r["kind"] == "training-free"]
        tables = list(dict.fromkeys(r["table"] for r in drows if r["kind"] != "training-free"))
        for t in tables or ["training-free baselines"]:
            groups[(ds, t)] = ref + [r for r in drows if r["kind"] != "training-free" and r["table"] == t]
    return groups


def _fmt(v, nd) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return f"{v:.{nd}f}" if isinstance(v, (int, float)) else str(v)


def _signed(v, nd) -> str:
    return "–" if v is None else f"{v:+.{nd}f}"


def _delta(r: dict, k: str, nd: int) -> str:
    d = _signed(r.get(f"delta_{k}"), nd)
    return d + "*" if d != "–" and r.get("fidelity") not in (None, "faithful") else d


def to_markdown(task: str, profile: str, rows: list[dict], links: dict[str, list[tuple[str, str]]] | None = None) -> str:
    out = [f"# {task} leaderboard — `{profile}` profile", ""]
    if profile == "smoke":
        out += ["> **Smoke profile**: tiny networks trained for a few steps on the real data *samples* "
                "(../shared/datasets), on CPU. Learned rows check that every method trains and evaluates "
                "end to end; they are not the papers' models. Training-free rows follow the papers' protocol "
                "and are comparable to the reported numbers.", ""]
    any_ma = any(r["ma_model"] for r in rows)
    if any(k == "pi" for k, _, _ in metric_cols(task)):
        out += [f"PI = ((10 − Ma) + NIQE) / 2 (PIRM 2018). "
                + ("" if any_ma else "**PI: n/a** — Ma et al.'s NRQM model was not provided (MIRBENCH_WEIGHTS/nrqm/NRQM_model.mat); NIQE is shown."), ""]
    for (ds, table), grp in _table_groups(rows).items():
        first = grp[0]
        papers = sorted({r["paper"] for r in grp if r["kind"] != "training-free" and r["paper"]})
        out += [f"## {first['dataset_label']} — " + f"{' / '.join(papers)} {table}".strip(), "",
                (f"Scale x{first['scale']}; " if first.get("scale") else "")
                + f"metrics: {first['convention'] or 'n/a'}; "
                f"{first['n_images'] or '?'} test images.", ""]
        cols = metric_cols(task)
        head = ["Method", "Kind"] + [h for _, h, _ in cols] + [h for _, h, _ in COST_COLS] + \
               ["Paper PSNR", "Δ PSNR", "Paper SSIM", "Δ SSIM", "Paper PI", "Notes"]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in grp:
            if r["status"] != "ok":
                cells = [r["label"], r["kind"]] + ["–"] * (len(head) - 3) + \
                        ["; ".join(x for x in (f"**failed**: {r['error']}", r.get("notes") if r.get("kept") else "") if x)]
            else:
                cells = [r["label"], r["kind"]] + [_fmt(r.get(k), nd) for k, _, nd in cols] + \
                        [_fmt(r[k], nd) for k, _, nd in COST_COLS] + \
                        [_fmt(r.get("reported_psnr"), 2), _delta(r, "psnr", 2),
                         _fmt(r.get("reported_ssim"), 3), _delta(r, "ssim", 3),
                         _fmt(r.get("reported_pi"), 2), r["notes"] or ""]
            out.append("| " + " | ".join(cells) + " |")
        srcs = sorted({r[k] for r in grp for k in r if k.endswith("_source")})
        if srcs:
            out += ["", "Reported numbers: " + "; ".join(srcs) + " (leaderboards/reported.yaml)."]
        if any(_delta(r, "psnr", 2).endswith("*") or _delta(r, "ssim", 3).endswith("*") for r in grp):
            out += ["", "Δ\\* — the row is not faithful to its paper (reconstructed from a description, hosted in "
                    "another network, or adapted: see Notes), so its difference from the paper's number is not a "
                    "reproduction gap."]
        if profile == "smoke" and any(r["kind"] != "training-free" for r in grp):
            out += ["", "Smoke learned rows show no Δ: they are tiny networks trained for seconds, not the papers' models."]
        if links and links.get(ds) and (ds, table) == next(k for k in _table_groups(rows) if k[0] == ds):
            out += ["", "Plots: " + " · ".join(f"[{t}]({p})" for t, p in links[ds])]
        out.append("")
    commits = sorted({r["commit"] for r in rows if r["commit"]})
    hw = sorted({f"{r['hardware']} x{r['devices']}" for r in rows if r["hardware"]})
    out += [f"Generated {now()} from commit(s) {', '.join(commits)} on {', '.join(hw)}.", ""]
    return "\n".join(out)


def to_csv(rows: list[dict]) -> str:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return buf.getvalue()


def pd_plot(rows: list[dict], path: Path, title: str) -> Path | None:
    """Perception-distortion plane: PSNR vs PI (or NIQE where PI is unavailable), lower-right is better."""
    ok = [r for r in rows if r["status"] == "ok" and r.get("psnr") is not None
          and (r.get("pi") is not None or r.get("niqe") is not None)]
    if not ok:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    use_pi = all(r.get("pi") is not None for r in ok)
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    for r in ok:
        x = r["pi"] if use_pi else r["niqe"]
        ax.scatter(x, r["psnr"], s=25)
        ax.annotate(r["label"], (x, r["psnr"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("PI (lower is better)" if use_pi else "NIQE (lower is better; PI n/a without Ma model)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def curves_plot(records: list[ResultRecord], path: Path, title: str) -> Path | None:
    """Training loss and validation PSNR against iteration, one line per learned method."""
    curves = [(r.label, r.train["curve"]) for r in records
              if r.status == "ok" and (r.train or {}).get("curve", {}).get("iteration")]
    if not curves:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=100)
    for label, c in curves:
        a.plot(c["iteration"], c["loss"], lw=1, label=label)
        if c.get("val_iteration"):
            b.plot(c["val_iteration"], c["val_psnr"], marker=".", lw=1, label=label)
    a.set(xlabel="iteration", ylabel="training loss", yscale="log", title="training loss")
    b.set(xlabel="iteration", ylabel="PSNR (dB)", title="validation PSNR")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    b.legend(fontsize=6, ncol=2)
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def save_figure(fig, path: Path) -> Path:
    """Lay out, write (creating the folder) and close a matplotlib figure; returns ``path``."""
    import matplotlib.pyplot as plt
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _registry_order(task: str, records: list[ResultRecord]) -> list[ResultRecord]:
    """Datasets and methods in the order the task registry lists them (unknown ones last)."""
    try:
        from benchmark.registry import load_task
        reg = load_task(task)
        ds, ms = list(reg.DATASETS), list(reg.METHODS)
    except (ValueError, ImportError):
        return records
    rank = lambda key, order: order.index(key) if key in order else len(order)  # noqa: E731
    return sorted(records, key=lambda r: (rank(r.dataset, ds), rank(r.method, ms)))


def write_leaderboard(task: str, profile: str, records: list[ResultRecord], out_dir: Path,
                      runs_dir: Path | None = None, previous: dict | None = None) -> dict[str, Path]:
    """Write <stem>.{md,csv,json} and plots.  ``previous`` (the existing leaderboard JSON) supplies the
    rows that have no local result: they are kept and marked, never dropped."""
    if any(r.profile != profile for r in records):
        raise ValueError("a leaderboard never mixes profiles")
    if previous is not None and previous.get("profile") not in (None, profile):
        raise ValueError("a leaderboard never mixes profiles")
    records = _registry_order(task, records)
    rows = build_rows(records)
    rows += kept_rows(previous, rows, task)
    rows = _sort_rows(task, rows + alias_rows(task, rows))
    s = stem(task, profile)
    paths = {"md": out_dir / f"{s}.md", "csv": out_dir / f"{s}.csv", "json": out_dir / f"{s}.json"}
    links: dict[str, list[tuple[str, str]]] = {}
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        drows = [r for r in rows if r["dataset"] == ds]
        found = []
        p = pd_plot(drows, out_dir / "plots" / f"{s}_pd_{ds}.png", f"{task} / {ds} ({profile})")
        if p:
            paths[f"plot_{ds}"] = p
            found.append(("perception-distortion", p))
        c = curves_plot([r for r in records if r.dataset == ds], out_dir / "plots" / f"{s}_curves_{ds}.png",
                        f"{task} / {ds} ({profile}): training curves")
        if c:
            paths[f"curves_{ds}"] = c
            found.append(("training curves", c))
        if runs_dir is not None:
            dirs = {r["method"]: runs_dir / profile / task / ds / r["method"] for r in drows
                    if r["status"] == "ok" and not r.get("same_as") and not r.get("kept")}
            g = method_grid(dirs, out_dir / "plots" / f"{s}_samples_{ds}.png",
                            labels={r["method"]: r["label"] for r in drows})
            if g:
                paths[f"samples_{ds}"] = g
                found.append(("samples", g))
        links[ds] = [(t, str(q.relative_to(out_dir))) for t, q in found]
    atomic_write_text(paths["md"], to_markdown(task, profile, rows, links))
    atomic_write_text(paths["csv"], to_csv(rows))
    atomic_write_text(paths["json"], json.dumps({"task": task, "profile": profile, "rows": rows}, indent=1,
                                                default=float) + "\n")
    return paths


def existing(out_dir: Path, task: str, profile: str) -> dict | None:
    """The leaderboard JSON already in ``out_dir`` (the committed one in a fresh clone), if any."""
    p = Path(out_dir) / f"{stem(task, profile)}.json"
    try:
        return json.loads(p.read_text()) if p.is_file() else None
    except json.JSONDecodeError:
        return None
