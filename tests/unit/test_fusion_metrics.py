import numpy as np
import pytest

from emoflow.fusion.metrics import multi_label_metrics, single_label_metrics

LABELS = ("neutral", "joy")


def test_majority_class_on_a_3_to_1_split():
    y_true = [0, 0, 0, 1] * 5
    y_pred = [0] * 20
    m = single_label_metrics(y_true, y_pred, LABELS)
    assert m["WA"] == pytest.approx(0.75)
    assert m["UA"] == pytest.approx(0.5)
    # F1(neutral) = 2*0.75*1/(1.75) = 6/7; F1(joy) = 0
    assert m["macro_f1"] == pytest.approx((6 / 7) / 2)
    assert m["weighted_f1"] == pytest.approx(0.75 * 6 / 7)
    assert m["confusion"]["matrix"] == [[15, 0], [5, 0]]


def test_perfect_and_per_class():
    m = single_label_metrics([0, 1, 1], [0, 1, 1], LABELS)
    assert m["WA"] == m["UA"] == m["macro_f1"] == 1.0
    assert m["per_class"]["joy"]["support"] == 2


def test_ua_averages_recall_over_present_classes():
    # recall(neutral) = 1/2, recall(joy) = 2/2 -> UA 0.75; a third, absent class does not count
    m = single_label_metrics([0, 0, 1, 1], [0, 1, 1, 1], ("neutral", "joy", "anger"))
    assert m["UA"] == pytest.approx(0.75) and m["WA"] == pytest.approx(0.75)


def test_multi_label():
    t = np.array([[1, 0, 1], [0, 1, 0]])
    p = np.array([[1, 0, 0], [0, 1, 1]])
    m = multi_label_metrics(t, p, ("a", "b", "c"))
    assert m["hamming_loss"] == pytest.approx(2 / 6)
    # micro: tp=2, fp=1, fn=1 -> F1 = 2/3; macro: a=1, b=1, c=0 -> 2/3
    assert m["micro_f1"] == pytest.approx(2 / 3) and m["macro_f1"] == pytest.approx(2 / 3)
    assert m["subset_accuracy"] == 0.0
