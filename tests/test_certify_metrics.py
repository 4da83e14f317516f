"""Certified accuracy and average certified radius."""

import pytest
import torch

from course_lib.certify.metrics import average_certified_radius, certified_accuracy


def test_certified_accuracy_is_non_increasing_and_starts_at_accuracy():
    torch.manual_seed(0)
    radii = torch.rand(500) * 2
    correct = torch.rand(500) > 0.3
    curve = certified_accuracy(radii, correct, torch.linspace(0, 2.5, 51).tolist())
    assert curve[0].item() == pytest.approx(correct.float().mean().item())
    assert (curve.diff() <= 0).all() and curve[-1] == 0


def test_acr_is_the_area_under_the_certified_accuracy_curve():
    torch.manual_seed(0)
    radii = torch.rand(300).double() * 1.5
    correct = torch.rand(300) > 0.4
    r = torch.linspace(0, 1.6, 160_001, dtype=torch.float64)
    curve = certified_accuracy(radii, correct, r.tolist())
    area = torch.trapezoid(curve, r).item()
    assert average_certified_radius(radii, correct) == pytest.approx(area, abs=1e-4)


def test_abstentions_and_wrong_predictions_count_for_nothing():
    radii = torch.tensor([0.0, 0.7, 0.9])
    correct = torch.tensor([False, False, True])
    assert certified_accuracy(radii, correct, [0.0, 0.8, 1.0]).tolist() == pytest.approx(
        [1 / 3, 1 / 3, 0.0]
    )
    assert average_certified_radius(radii, correct) == pytest.approx(0.3)


@pytest.mark.parametrize(
    "radii,correct,match",
    [
        (torch.tensor([]), torch.tensor([], dtype=torch.bool), "radii"),
        (torch.tensor([-0.1, 0.2]), torch.tensor([True, True]), "radii"),
        (torch.tensor([float("inf")]), torch.tensor([True]), "radii"),
        (torch.tensor([0.1, 0.2]), torch.tensor([1, 0]), "correct"),
        (torch.tensor([0.1, 0.2]), torch.tensor([True]), "correct"),
    ],
)
def test_metrics_reject_bad_input(radii, correct, match):
    with pytest.raises(ValueError, match=f"^{match} "):
        certified_accuracy(radii, correct, [0.0])
    with pytest.raises(ValueError, match=f"^{match} "):
        average_certified_radius(radii, correct)
