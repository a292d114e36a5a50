"""The data-free table (``nas-kd bench datafree``): its one rendering, used by the bench's ``<out>.md`` and by
``docs/results.md``. The synthetic row is tested against the real-data KD row by Welch's test (one comparison)."""
from __future__ import annotations

from typing import Any

from nas_kd.results import pm, source, table
from nas_kd.stats import cell, compare_family


def lines(d: dict[str, Any], name: str) -> list[str]:
    """The rows (the images each trained on), the synthetic - real KD gap with its test, the synthesis' cost."""
    s = d["synthesis"]
    rows = d["rows"]
    gap = compare_family({n: r["seeds"] for n, r in rows.items() if n in ("synthetic_kd", "real_kd")}, "real_kd")
    body = [[n, f"{r['num_images']:,}", pm(r["acc_mean"], r["acc_std"]), len(r["seeds"])] for n, r in rows.items()]
    return [f"The distillation table's student ({d['student_mflops']:.2f} MFLOPs), {d['schedule']['epochs']} epochs, "
            "every row tested on the real test split. The synthetic images: "
            f"`{s['command']}` ({s['num_images']:,} images, the last tenth held out to validate; "
            f"{s['seconds_per_1000_images']:.0f} s per 1,000 images on this machine; BatchNorm-statistics loss "
            f"{s['bn_loss_first_mean']:.3g} -> {s['bn_loss_last_mean']:.3g}).", "",
            *table(["row", "training images", "test acc. (%)", "seeds"], body), "",
            *([f"Synthetic minus real KD: {cell(gap['synthetic_kd'])} points (Welch's test, one comparison; the "
               "ambition: within 3 points)."] if "synthetic_kd" in gap else []),
            "", source(d, name)]
