"""Rank-correlation study: stand-alone ground truth, evaluator scores per supernet epoch, statistics, plots."""
