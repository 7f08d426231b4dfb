"""Metrics against values worked out by hand (the arithmetic is in the comments)."""
import math

import pytest

from rankflow_runtime import metrics as M


# --- accuracy / F1 / MCC on one binary example ------------------------------------------------------------
# preds  1 1 0 0 1 0
# labels 1 0 0 0 1 1   -> TP = 2 (i0, i4), FP = 1 (i1), TN = 2 (i2, i3), FN = 1 (i5)
P = [1, 1, 0, 0, 1, 0]
Y = [1, 0, 0, 0, 1, 1]


def test_accuracy():
    assert M.accuracy(P, Y) == pytest.approx(4 / 6)
    assert M.accuracy([2, 1], [2, 1]) == 1.0


def test_f1_positive_class():
    # 2 TP / (2 TP + FP + FN) = 4 / 6
    assert M.f1_binary(P, Y) == pytest.approx(2 / 3)
    # F1 of class 0 instead: TP0 = 2, FP0 = 1 (i5), FN0 = 1 (i1) -> 4 / 6 as well; use an asymmetric case:
    # preds 1 1 1, labels 1 0 0 -> TP = 1, FP = 2, FN = 0 -> 2 / 4
    assert M.f1_binary([1, 1, 1], [1, 0, 0]) == pytest.approx(0.5)


def test_f1_degenerate_is_zero():
    assert M.f1_binary([0, 0, 0], [0, 0, 0]) == 0.0  # no positives anywhere
    assert M.f1_binary([0, 0], [1, 1]) == 0.0  # all missed


def test_mcc_binary():
    # (TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (4 - 1) / sqrt(3 * 3 * 3 * 3) = 1/3
    assert M.matthews_corrcoef(P, Y) == pytest.approx(1 / 3)
    assert M.matthews_corrcoef([0, 1, 1, 0], [0, 1, 1, 0]) == pytest.approx(1.0)
    assert M.matthews_corrcoef([1, 0, 0, 1], [0, 1, 1, 0]) == pytest.approx(-1.0)


def test_mcc_one_predicted_class_is_zero():
    # every prediction is 1: TN = FN = 0, so (TN+FN) = 0 and the denominator vanishes -> 0 (sklearn's rule)
    assert M.matthews_corrcoef([1, 1, 1, 1], [1, 0, 1, 0]) == 0.0
    assert M.matthews_corrcoef([0, 0], [0, 0]) == 0.0


def test_mcc_multiclass():
    # gold 0 1 2 0, pred 0 2 2 0: gold counts t = (2, 1, 1), predicted counts p = (2, 0, 2), correct c = 3, n = 4
    # (c n - t.p) / sqrt((n^2 - p.p)(n^2 - t.t)) = (12 - 6) / sqrt((16 - 8)(16 - 6)) = 6 / sqrt(80)
    assert M.matthews_corrcoef([0, 2, 2, 0], [0, 1, 2, 0]) == pytest.approx(6 / math.sqrt(80))


# --- Pearson / Spearman -----------------------------------------------------------------------------------
def test_pearson():
    # x - mean = (-1.5, -0.5, 0.5, 1.5), y - mean = (-3, -1, 0, 4): sum xy = 11, sum xx = 5, sum yy = 26
    assert M.pearson([1, 2, 3, 4], [2, 4, 5, 9]) == pytest.approx(11 / math.sqrt(130))
    assert M.pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_average_ranks_with_ties():
    # sorted: 1 -> rank 1, 2 -> rank 2, the three 3s take ranks 3, 4, 5 -> all get 4
    assert M.rankdata_average([3, 1, 3, 3, 2]).tolist() == [4.0, 1.0, 4.0, 4.0, 2.0]


def test_spearman_with_ties():
    # ranks x = (1, 2.5, 2.5, 4), ranks y = (1, 2, 3, 4); centred: (-1.5, 0, 0, 1.5) and (-1.5, -0.5, 0.5, 1.5)
    # sum xy = 4.5, sum xx = 4.5, sum yy = 5 -> 4.5 / sqrt(22.5) = sqrt(0.9)
    assert M.spearman([1, 2, 2, 3], [10, 20, 30, 40]) == pytest.approx(math.sqrt(0.9))
    # monotone but non-linear: Spearman 1, Pearson < 1
    assert M.spearman([1, 2, 3, 4], [1, 8, 27, 64]) == pytest.approx(1.0)
    assert M.pearson([1, 2, 3, 4], [1, 8, 27, 64]) < 0.99


def test_correlations_of_a_constant_are_zero():
    assert M.pearson([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]) == 0.0
    assert M.spearman([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]) == 0.0


def test_length_mismatch_and_empty_raise():
    with pytest.raises(ValueError):
        M.accuracy([1, 0], [1])
    with pytest.raises(ValueError):
        M.pearson([], [])


def test_metric_sets_and_direction():
    out = M.classification_metrics(P, Y, ["accuracy", "f1", "mcc"])
    assert out == pytest.approx({"accuracy": 4 / 6, "f1": 2 / 3, "mcc": 1 / 3})
    reg = M.regression_metrics([1, 2, 3, 4], [2, 4, 5, 9], ["pearson", "mse"])
    # squared errors 1, 4, 4, 25 -> mean 8.5
    assert reg == pytest.approx({"pearson": 11 / math.sqrt(130), "mse": 8.5})
    assert M.greater_is_better("accuracy") and not M.greater_is_better("perplexity")
    assert not M.greater_is_better("loss")


# --- VTAB-1k group means ----------------------------------------------------------------------------------
def _vtab_scores():
    s = {t: 80.0 for t in M.VTAB_GROUPS["natural"]}
    s["cifar"] = 66.0  # natural: (66 + 6 * 80) / 7 = 546 / 7 = 78
    s.update(dict(zip(M.VTAB_GROUPS["specialized"], [84.0, 86.0, 88.0, 74.0])))  # 332 / 4 = 83
    s.update(dict(zip(M.VTAB_GROUPS["structured"], [50.0, 60.0, 40.0, 70.0, 80.0, 30.0, 20.0, 50.0])))  # 400/8=50
    return s


def test_vtab_groups_cover_19_tasks():
    sizes = {g: len(ts) for g, ts in M.VTAB_GROUPS.items()}
    assert sizes == {"natural": 7, "specialized": 4, "structured": 8}


def test_vtab_group_means():
    out = M.vtab_group_means(_vtab_scores(), require_all=True)
    assert out["natural"] == pytest.approx(78.0)
    assert out["specialized"] == pytest.approx(83.0)
    assert out["structured"] == pytest.approx(50.0)
    assert out["mean_of_groups"] == pytest.approx((78 + 83 + 50) / 3)
    assert out["mean_of_tasks"] == pytest.approx((546 + 332 + 400) / 19)


def test_vtab_partial_and_errors():
    out = M.vtab_group_means({"cifar": 60.0, "dtd": 70.0, "eurosat": 90.0})
    assert out["natural"] == pytest.approx(65.0) and "structured" not in out
    assert out["mean_of_groups"] == pytest.approx((65 + 90) / 2)
    with pytest.raises(ValueError, match="unknown"):
        M.vtab_group_means({"imagenet": 1.0})
    with pytest.raises(ValueError, match="missing"):
        M.vtab_group_means({"cifar": 1.0}, require_all=True)


# --- GSM8k ------------------------------------------------------------------------------------------------
def test_gsm8k_reference_answer():
    assert M.gsm8k_reference_answer("She has 3+4=<<3+4=7>>7.\n#### 7") == "7"
    assert M.gsm8k_reference_answer("... #### 2,400") == "2400"
    assert M.gsm8k_reference_answer("x\n#### -3") == "-3"
    with pytest.raises(ValueError):
        M.gsm8k_reference_answer("no marker")


def test_gsm8k_flexible_takes_the_last_number():
    assert M.gsm8k_extract_flexible("first 3 then 45") == "45"
    assert M.gsm8k_extract_flexible("The answer is $1,000.") == "1000"  # $, comma and final period removed
    assert M.gsm8k_extract_flexible("so x = -7") == "-7"
    assert M.gsm8k_extract_flexible("answer 7") == "7"  # a single digit matches the second alternative
    assert M.gsm8k_extract_flexible("3.5 cups") == "3.5"
    assert M.gsm8k_extract_flexible("no digits here") == M.INVALID


def test_gsm8k_strict_needs_the_marker():
    assert M.gsm8k_extract_strict("work...\n#### 42") == "42"
    assert M.gsm8k_extract_strict("#### 1,234.5") == "1234.5"
    assert M.gsm8k_extract_strict("#### 5\n#### 6") == "5"  # the first match, as the harness's take_first
    assert M.gsm8k_extract_strict("the answer is 42") == M.INVALID


def test_gsm8k_exact_match():
    outputs = ["so he has 20", "#### 24", "she earns 2,400.", "18.0"]
    refs = ["12+8=20\n#### 20", "#### 24", "#### 2,400", "#### 18"]
    out = M.gsm8k_exact_match(outputs, refs)
    # flexible: 20, 24, 2400 match; "18.0" != "18" (string comparison, as lm-eval) -> 3/4
    assert out["exact_match"] == pytest.approx(3 / 4)
    # strict: only the output written with '#### ' -> 1/4
    assert out["exact_match_strict"] == pytest.approx(1 / 4)
    assert M.gsm8k_exact_match(["7"], ["7"]) == {"exact_match": 1.0, "exact_match_strict": 0.0}
