"""Tables and figure of the scale-collapse study, from the CSVs written by scale_collapse.py.

Writes the tables between the markers of docs/notes/scale-collapse.md and the per-σ figure to
docs/_static/scale_collapse_sigma.png.

Examples
--------
python benchmarks/study/summarize.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))
PAGE = REPO / "docs/notes/scale-collapse.md"
STATIC = REPO / "docs/_static"
START, END = "<!-- study-tables:start -->", "<!-- study-tables:end -->"
SIGMAS_SHOWN = (0.1, 0.4, 1.0, 2.0, 4.0, 16.0)


def fmt(values: pd.Series) -> str:
    v = values.astype(float)
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def layout_table(df: pd.DataFrame) -> str:
    df = df.drop_duplicates(["task", "seed", "variant", "chain"], keep="last")
    lines = [
        "| task | variant | chain | n seeds | cellwise_spearman | patch_jaccard | distance_spearman |",
        "|---|---|---|---|---|---|---|",
    ]
    for (task, variant, chain), g in df.groupby(["task", "variant", "chain"], sort=False):
        lines.append(
            f"| {task} | {variant} | {chain} | {len(g)} | {fmt(g['cellwise_spearman'])} | "
            f"{fmt(g['patch_jaccard'])} | {fmt(g['distance_spearman'])} |"
        )
    return "\n".join(lines)


def diag_table(df: pd.DataFrame) -> str:
    df = df.drop_duplicates(["task", "seed", "variant", "sigma_over_data"], keep="last")
    grid = np.sort(df["sigma_over_data"].unique())
    shown = [grid[np.argmin(np.abs(grid - s))] for s in SIGMAS_SHOWN]
    lines = [
        "| task | variant | σ/σ_data | σ (layout RMS units) | scale_ratio output | ideal | input | "
        "residual scale_ratio | Gaussian-residual posterior mean | F_x ratio | patch_jaccard output / input |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (task, variant), g in df.groupby(["task", "variant"], sort=False):
        for s in dict.fromkeys(shown):
            r = g[np.isclose(g["sigma_over_data"], s)]
            lines.append(
                f"| {task} | {variant} | {s:.2f} | {r['sigma'].mean():.3f} | {fmt(r['scale_ratio_output'])} | "
                f"{fmt(r['scale_ratio_ideal'])} | {fmt(r['scale_ratio_input'])} | "
                f"{fmt(r['residual_scale_ratio_output'])} | {1 / np.sqrt(1 + s**2):.3f} | {fmt(r['fx_ratio_output'])} | "
                f"{r['patch_jaccard_output'].mean():.3f} / {r['patch_jaccard_input'].mean():.3f} |"
            )
    return "\n".join(lines)


def probe_table(df: pd.DataFrame) -> str:
    df = df.drop_duplicates(["task", "seed", "variant", "start", "sigma_start", "n_steps"], keep="last")
    df = df.fillna({"sigma_start": -1})
    lines = [
        "| task | variant | start | σ_start/σ_data | Heun steps | n seeds | cellwise_spearman | "
        "patch_jaccard | scale_ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    keys = ["task", "variant", "start", "sigma_start", "n_steps"]
    for (task, variant, start, s, n), g in df.groupby(keys, sort=False):
        s_txt = "" if s < 0 else f"{s:g}"
        lines.append(
            f"| {task} | {variant} | {start} | {s_txt} | {n} | {len(g)} | {fmt(g['cellwise_spearman'])} | "
            f"{fmt(g['patch_jaccard'])} | {fmt(g['scale_ratio'])} |"
        )
    return "\n".join(lines)


def figure(diag: pd.DataFrame) -> list[Path]:
    """One ``pl.sigma_diagnostics`` figure per task for the default refiner, residual-plain (mean over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spatialedm import pl

    paths = []
    for task, g in diag[diag["variant"] == "residual-plain"].groupby("task", sort=False):
        mean = g.groupby("sigma_over_data", as_index=False).mean(numeric_only=True)
        path = STATIC / f"scale_collapse_{task}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        pl.sigma_diagnostics(mean, title=f"{task}: default refiner (residual-plain)", save=str(path))
        plt.close("all")
        paths.append(path)
    return paths


def main() -> None:
    parts = []
    if (HERE / "layouts.csv").exists():
        parts += [
            "### Layouts of the held-out query cells",
            "",
            layout_table(pd.read_csv(HERE / "layouts.csv")),
            "",
        ]
    if (HERE / "diagnose.csv").exists():
        diag = pd.read_csv(HERE / "diagnose.csv")
        parts += ["### Per-σ diagnostics (`model.diagnose(query)`)", "", diag_table(diag), ""]
        for path in figure(diag):
            parts += [f"![per-σ diagnostics]({Path('..') / path.relative_to(REPO / 'docs')})", ""]
    if (HERE / "probe.csv").exists():
        parts += [
            "### Open-loop sampling (`model.sampling_probe(query)`)",
            "",
            probe_table(pd.read_csv(HERE / "probe.csv")),
            "",
        ]
    block = "\n".join(
        [
            START,
            "",
            "Produced by `python benchmarks/study/summarize.py` from the CSVs of "
            "`benchmarks/study/scale_collapse.py`; mean ± std over seeds.",
            "",
            *parts,
            END,
        ]
    )
    text = PAGE.read_text() if PAGE.exists() else "# The scale-collapse study\n\n" + START + "\n" + END + "\n"
    pre, rest = text.split(START, 1)
    PAGE.write_text(pre + block + rest.split(END, 1)[1])
    print(block)


if __name__ == "__main__":
    main()
