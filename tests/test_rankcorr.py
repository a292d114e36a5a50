import json

import numpy as np

from nas_kd.cli import main
from nas_kd.rankcorr.stats import STATS


def test_plot_redraws_from_saved_json(tmp_path):
    rng = np.random.default_rng(0)
    truth = rng.uniform(0.9, 0.93, 10).tolist()
    gt = [{"id": str(i), "arch": {}, "mflops": float(i), "test_acc": t} for i, t in enumerate(truth)]
    scores, stats = {}, {}
    for ep in ("1", "2"):
        s = (np.array(truth) + rng.normal(0, 0.01, 10)).tolist()
        scores[ep] = {"kl": s, "kl_raw": s}
        stats[ep] = {"kl": {**{k: f(s, truth) for k, f in STATS.items()}, "kendall_tau_ci95": [-0.1, 0.5],
                            "top_n_kendall": {"10": 0.1}}}
    (tmp_path / "rankcorr.json").write_text(json.dumps({"ground_truth": gt, "scores": scores, "stats": stats,
                                                         "evaluators": ["kl"], "epochs": [1, 2]}))
    assert main(["plot", "--run", str(tmp_path)]) == 0
    for name in ("rank_corr_vs_epoch", "scatter_final_epoch", "gt_acc_vs_mflops"):
        for ext in ("png", "svg"):
            assert (tmp_path / f"{name}.{ext}").stat().st_size > 1000
