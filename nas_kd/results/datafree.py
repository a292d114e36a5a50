"""The data-free table (``nas-kd bench datafree``): its one rendering, used by the bench's ``<out>.md`` and by
``docs/results.md``. Every synthetic row is tested against the real-data KD row (Welch's test, Holm over the
synthetic rows)."""
from __future__ import annotations

from typing import Any

from nas_kd.results import pm, source, table
from nas_kd.stats import cell, compare_family


def lines(d: dict[str, Any], name: str) -> list[str]:
    """The rows (method, the images each trained on, synthesis cost), every synthetic row minus real KD with its
    test, and each synthesis' command."""
    rows, syntheses = d["rows"], d["syntheses"]
    gaps = compare_family({n: r["seeds"] for n, r in rows.items() if r["synthetic"] or n == "real_kd"}, "real_kd")
    body = [[n, r.get("method", "real images"), f"{r['num_images']:,}",
             f"{syntheses[n]['seconds_per_1000_images']:.0f}" if n in syntheses else "-", pm(r["acc_mean"], r["acc_std"]),
             len(r["seeds"]), cell(gaps.get(n))] for n, r in rows.items()]
    made = [f"- `{n}`: `{s['command']}` ({s['num_images']:,} images"
            + (f"; BatchNorm-statistics loss {s['bn_loss_first_mean']:.3g} -> {s['bn_loss_last_mean']:.3g}"
               if "bn_loss_first_mean" in s else "")
            + (f"; target loss {s['loss_first_mean']:.3g} -> {s['loss_last_mean']:.3g}" if "loss_first_mean" in s else "")
            + (f"; teacher confidence {s['teacher_confidence_mean']:.2f}" if "teacher_confidence_mean" in s else "")
            + ")" for n, s in syntheses.items()]
    return [f"The distillation table's student ({d['student_mflops']:.2f} MFLOPs), {d['schedule']['epochs']} epochs, "
            "every row tested on the real test split; a synthetic row's last tenth of images is held out to validate. "
            "Synthesis seconds per 1,000 images on this machine. vs real KD: the difference in points and its p by "
            f"Welch's test, Holm over the synthetic rows ({len(gaps)}; the ambition: within 3 points).", "",
            *table(["row", "images from", "training images", "synthesis s / 1,000 images", "test acc. (%)", "seeds",
                    "vs real KD"], body), "", "The synthetic images:", "", *made, "", source(d, name)]
