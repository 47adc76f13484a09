"""Tests of the perturbed sign-gradient optimizer, its noise laws, step sizes and closeness schedules."""

from __future__ import annotations

import math
import re

import pytest
import torch

from monai_unlearn.optimizers import (
    CLOSENESS_SCHEDULES,
    NOISE_LAWS,
    STEP_SIZE_SCHEDULES,
    ClosenessSchedule,
    PerturbedSignGradient,
    sample_noise,
    step_size_at,
)

NOISE_SAMPLES = 200_000


def make_point(values, dtype=torch.float64) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype).requires_grad_(True)


def step_with_gradient(optimizer: PerturbedSignGradient, point: torch.Tensor, gradient) -> None:
    point.grad = torch.as_tensor(gradient, dtype=point.dtype).expand_as(point).clone()
    optimizer.step()


def draw(law: str, seed: int = 0, count: int = NOISE_SAMPLES) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return sample_noise(law, (count,), generator=generator, device="cpu", dtype=torch.float64)


# --- the sign step ------------------------------------------------------------------------------------------------


def test_step_moves_by_lr_times_sign():
    point = make_point([0.5, 0.5, 0.5, 0.5])
    optimizer = PerturbedSignGradient([point], lr=0.1)

    step_with_gradient(optimizer, point, [3.0, -0.001, 0.0, 250.0])

    expected = torch.tensor([0.6, 0.4, 0.5, 0.6], dtype=torch.float64)
    assert torch.allclose(point.detach(), expected, atol=1e-12), (
        f"one step without noise or closeness must move x by lr * sign(g); got {point.tolist()}, expected "
        f"{expected.tolist()}"
    )


def test_step_ignores_gradient_magnitude():
    small = make_point([0.0, 0.0])
    large = make_point([0.0, 0.0])
    optimizer_small = PerturbedSignGradient([small], lr=0.25)
    optimizer_large = PerturbedSignGradient([large], lr=0.25)

    step_with_gradient(optimizer_small, small, [1e-6, -1e-6])
    step_with_gradient(optimizer_large, large, [1e6, -1e6])

    assert torch.equal(small.detach(), large.detach()), (
        f"the step must depend only on the sign of g: {small.tolist()} (|g| = 1e-6) != {large.tolist()} (|g| = 1e6)"
    )


def test_maximize_false_descends():
    point = make_point([0.5, 0.5])
    optimizer = PerturbedSignGradient([point], lr=0.1, maximize=False)

    step_with_gradient(optimizer, point, [2.0, -2.0])

    expected = torch.tensor([0.4, 0.6], dtype=torch.float64)
    assert torch.allclose(point.detach(), expected, atol=1e-12), (
        f"maximize=False must move x by -lr * sign(g); got {point.tolist()}, expected {expected.tolist()}"
    )


def test_descent_lowers_quadratic_loss():
    point = make_point([1.0, -2.0, 0.5])
    optimizer = PerturbedSignGradient([point], lr=0.05, maximize=False)
    initial_loss = float((point.detach() ** 2).sum())

    for _ in range(5):
        optimizer.zero_grad()
        (point**2).sum().backward()
        optimizer.step()

    final_loss = float((point.detach() ** 2).sum())
    assert final_loss < initial_loss, f"descent on ||x||^2 raised the loss from {initial_loss} to {final_loss}"


def test_step_skips_parameter_without_gradient():
    point = make_point([0.3, 0.7])
    optimizer = PerturbedSignGradient([point], lr=0.1)

    optimizer.step()

    assert point.tolist() == [0.3, 0.7], f"a parameter whose .grad is None must not move, got {point.tolist()}"


def test_step_returns_closure_loss():
    point = make_point([0.0])
    optimizer = PerturbedSignGradient([point], lr=0.1)

    def closure():
        optimizer.zero_grad()
        loss = (point - 1.0).pow(2).sum()
        loss.backward()
        return loss

    returned = optimizer.step(closure)

    assert returned is not None, "step(closure) returned None instead of the closure's loss"
    assert float(returned.detach()) == pytest.approx(1.0), (
        f"step(closure) must return the closure's loss 1.0, got {returned}"
    )
    assert point.tolist() == pytest.approx([-0.1]), (
        f"ascent on (x - 1)^2 from 0 must move x to -0.1 (the gradient is -2), got {point.tolist()}"
    )


# --- projection onto the ball and the box -------------------------------------------------------------------------


def test_projection_onto_linf_ball():
    point = make_point([0.5, 0.5, 0.5])
    optimizer = PerturbedSignGradient([point], lr=0.3, epsilon=0.1)

    step_with_gradient(optimizer, point, [1.0, -1.0, 0.0])

    expected = torch.tensor([0.6, 0.4, 0.5], dtype=torch.float64)
    assert torch.allclose(point.detach(), expected, atol=1e-12), (
        f"a step of 0.3 must be clipped to the ball of radius 0.1 around 0.5; got {point.tolist()}"
    )


def test_iterates_stay_in_ball_over_many_steps():
    generator = torch.Generator().manual_seed(1)
    start = torch.rand(64, generator=generator, dtype=torch.float64)
    point = start.clone().requires_grad_(True)
    optimizer = PerturbedSignGradient([point], lr=0.03, epsilon=0.05)

    for _ in range(20):
        step_with_gradient(optimizer, point, torch.randn(64, generator=generator, dtype=torch.float64))

    distance = float((point.detach() - start).abs().max())
    assert distance <= 0.05 + 1e-12, f"after 20 steps the iterate is {distance} from the anchor, beyond epsilon 0.05"


def test_projection_onto_box():
    point = make_point([0.95, 0.05, 0.5])
    optimizer = PerturbedSignGradient([point], lr=0.1, box=(0.0, 1.0))

    step_with_gradient(optimizer, point, [1.0, -1.0, 1.0])

    expected = torch.tensor([1.0, 0.0, 0.6], dtype=torch.float64)
    assert torch.allclose(point.detach(), expected, atol=1e-12), (
        f"the box (0, 1) must clip the step; got {point.tolist()}, expected {expected.tolist()}"
    )


def test_projection_onto_ball_and_box():
    point = make_point([0.95, 0.05])
    optimizer = PerturbedSignGradient([point], lr=0.5, epsilon=0.1, box=(0.0, 1.0))

    step_with_gradient(optimizer, point, [1.0, 1.0])

    expected = torch.tensor([1.0, 0.15], dtype=torch.float64)
    assert torch.allclose(point.detach(), expected, atol=1e-12), (
        f"the iterate must lie in the ball of radius 0.1 and in the box (0, 1); got {point.tolist()}, "
        f"expected {expected.tolist()}"
    )


# --- the anchor -------------------------------------------------------------------------------------------------


def test_anchor_defaults_to_first_value():
    point = make_point([0.5])
    optimizer = PerturbedSignGradient([point], lr=0.1, epsilon=0.15)

    for _ in range(3):
        step_with_gradient(optimizer, point, [1.0])

    assert torch.equal(optimizer.state[point]["anchor"], torch.tensor([0.5], dtype=torch.float64)), (
        f"the anchor must be the value before the first step, got {optimizer.state[point]['anchor'].tolist()}"
    )
    assert point.tolist() == pytest.approx([0.65]), (
        f"three steps of 0.1 must stop at 0.5 + epsilon = 0.65 (ball around the first value), got {point.tolist()}"
    )


def test_set_anchor_overrides_default():
    point = make_point([0.5])
    optimizer = PerturbedSignGradient([point], lr=0.3, epsilon=0.1)
    optimizer.set_anchor(point, torch.tensor([0.2], dtype=torch.float64))

    step_with_gradient(optimizer, point, [1.0])

    assert point.tolist() == pytest.approx([0.3]), (
        f"with anchor 0.2 and epsilon 0.1 the iterate must be clipped to 0.3, got {point.tolist()}"
    )


def test_set_anchor_copies_tensor():
    point = make_point([0.5])
    anchor = torch.tensor([0.5], dtype=torch.float64)
    optimizer = PerturbedSignGradient([point], lr=0.1, epsilon=0.1)
    optimizer.set_anchor(point, anchor)

    anchor.fill_(10.0)
    step_with_gradient(optimizer, point, [1.0])

    assert point.tolist() == pytest.approx([0.6]), (
        f"set_anchor must store a copy: changing the caller's tensor moved the ball, iterate {point.tolist()}"
    )


def test_set_anchor_shape_mismatch():
    point = make_point([0.5, 0.5])
    optimizer = PerturbedSignGradient([point], lr=0.1)

    with pytest.raises(ValueError, match=re.escape("anchor shape (3,) does not match parameter shape (2,)")):
        optimizer.set_anchor(point, torch.zeros(3, dtype=torch.float64))


# --- noise laws -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("law", NOISE_LAWS)
def test_noise_median_is_zero(law):
    noise = draw(law)

    median = float(noise.median())
    assert abs(median) < 0.02, f"{law} noise must have median 0, got {median}"


@pytest.mark.parametrize("law", NOISE_LAWS)
def test_noise_is_symmetric(law):
    noise = draw(law)

    positive_fraction = float((noise > 0).double().mean())
    lower, upper = torch.quantile(noise[:100_000], torch.tensor([0.1, 0.9], dtype=torch.float64)).tolist()
    assert abs(positive_fraction - 0.5) < 0.01, f"{law} noise is positive in {positive_fraction:.4f} of draws, not 0.5"
    assert lower == pytest.approx(-upper, rel=0.05), (
        f"{law} noise must be symmetric: 10 % quantile {lower} should equal minus the 90 % quantile {upper}"
    )


@pytest.mark.parametrize("law", NOISE_LAWS)
def test_noise_is_finite(law):
    noise = draw(law)

    assert bool(torch.isfinite(noise).all()), f"{law} noise contains infinite or NaN values"


def test_normal_noise_has_unit_variance():
    noise = draw("normal")

    assert float(noise.mean()) == pytest.approx(0.0, abs=0.01), f"normal noise mean {float(noise.mean())} is not 0"
    assert float(noise.var()) == pytest.approx(1.0, abs=0.02), f"normal noise variance {float(noise.var())} is not 1"


def test_laplace_noise_has_variance_two():
    noise = draw("laplace")

    variance = float(noise.var())
    mean_absolute = float(noise.abs().mean())
    assert variance == pytest.approx(2.0, abs=0.05), f"Laplace(0, 1) noise must have variance 2, got {variance}"
    assert mean_absolute == pytest.approx(1.0, abs=0.02), (
        f"Laplace(0, 1) noise must have mean absolute value 1, got {mean_absolute}"
    )


def test_cauchy_noise_median_absolute_is_one():
    noise = draw("cauchy")

    median_absolute = float(noise.abs().median())
    assert median_absolute == pytest.approx(1.0, abs=0.02), (
        f"standard Cauchy noise must have median absolute value 1, got {median_absolute}"
    )


def test_uniform_noise_within_open_interval():
    noise = draw("uniform")

    low, high = float(noise.min()), float(noise.max())
    assert low > -1.0, f"uniform noise must lie in the open interval (-1, 1), but its minimum is {low}"
    assert high < 1.0, f"uniform noise must lie in the open interval (-1, 1), but its maximum is {high}"
    assert low < -0.99, f"uniform noise must cover (-1, 1), but its minimum is only {low}"
    assert high > 0.99, f"uniform noise must cover (-1, 1), but its maximum is only {high}"
    assert float(noise.var()) == pytest.approx(1.0 / 3.0, abs=0.01), (
        f"uniform(-1, 1) noise must have variance 1/3, got {float(noise.var())}"
    )


def test_noise_shape_and_dtype():
    noise = sample_noise("laplace", (2, 3, 4), generator=None, device="cpu", dtype=torch.float32)

    assert noise.shape == (2, 3, 4), f"sample_noise returned shape {tuple(noise.shape)}, expected (2, 3, 4)"
    assert noise.dtype == torch.float32, f"sample_noise returned dtype {noise.dtype}, expected torch.float32"


def test_sample_noise_rejects_unknown_law():
    with pytest.raises(ValueError, match="'gaussian'"):
        sample_noise("gaussian", (3,), generator=None, device="cpu", dtype=torch.float32)


def test_expected_sign_under_normal_noise():
    # With z ~ N(0, 1) and noise scale gamma, E[sign(g + gamma z)] = erf(g / (sqrt(2) gamma)).
    gradient, gamma, count = 0.5, 1.0, 100_000
    point = torch.zeros(count, dtype=torch.float64, requires_grad=True)
    optimizer = PerturbedSignGradient(
        [point], lr=1.0, noise_scale=gamma, generator=torch.Generator().manual_seed(3)
    )

    step_with_gradient(optimizer, point, gradient)

    mean_sign = float(point.detach().mean())
    expected = math.erf(gradient / (math.sqrt(2.0) * gamma))
    assert mean_sign == pytest.approx(expected, abs=0.01), (
        f"mean step under normal noise is {mean_sign}, expected erf(g / (sqrt(2) gamma)) = {expected}"
    )


def test_noise_reproducible_with_generator():
    points = []
    for _ in range(2):
        point = torch.zeros(1000, dtype=torch.float64, requires_grad=True)
        optimizer = PerturbedSignGradient(
            [point], lr=0.1, noise="cauchy", noise_scale=1.0, generator=torch.Generator().manual_seed(42)
        )
        for _ in range(3):
            step_with_gradient(optimizer, point, 0.0)
        points.append(point.detach())

    assert torch.equal(points[0], points[1]), "two runs with generators seeded alike must give identical iterates"


def test_noise_differs_between_seeds():
    points = []
    for seed in (1, 2):
        point = torch.zeros(1000, dtype=torch.float64, requires_grad=True)
        optimizer = PerturbedSignGradient(
            [point], lr=0.1, noise_scale=1.0, generator=torch.Generator().manual_seed(seed)
        )
        step_with_gradient(optimizer, point, 0.0)
        points.append(point.detach())

    assert not torch.equal(points[0], points[1]), "generators with different seeds gave identical noisy steps"


# --- closeness term -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("maximize", [True, False])
def test_closeness_pulls_toward_anchor(maximize):
    anchor = torch.tensor([0.5, 0.5], dtype=torch.float64)
    point = make_point([0.8, 0.2])
    optimizer = PerturbedSignGradient([point], lr=0.1, closeness=1.0, maximize=maximize)
    optimizer.set_anchor(point, anchor)

    step_with_gradient(optimizer, point, 0.0)

    expected = torch.tensor([0.7, 0.3], dtype=torch.float64)
    assert torch.allclose(point.detach(), expected, atol=1e-12), (
        f"with zero gradient and closeness 1 (maximize={maximize}) the step must move from [0.8, 0.2] toward the "
        f"anchor [0.5, 0.5], to {expected.tolist()}; got {point.tolist()}"
    )


@pytest.mark.parametrize("maximize", [True, False])
def test_closeness_outweighs_small_gradient(maximize):
    # The gradient pushes away from the anchor, but lambda * |x' - x| = 2 * 0.3 exceeds |g| = 0.5.
    point = make_point([0.8])
    optimizer = PerturbedSignGradient([point], lr=0.1, closeness=2.0, maximize=maximize)
    optimizer.set_anchor(point, torch.tensor([0.5], dtype=torch.float64))
    away_from_anchor = 0.5 if maximize else -0.5

    step_with_gradient(optimizer, point, away_from_anchor)

    assert point.tolist() == pytest.approx([0.7]), (
        f"closeness 2 must outweigh a gradient of magnitude 0.5 (maximize={maximize}) and move 0.8 to 0.7, "
        f"got {point.tolist()}"
    )


def test_zero_closeness_ignores_anchor():
    point = make_point([0.8])
    optimizer = PerturbedSignGradient([point], lr=0.1, closeness=0.0)
    optimizer.set_anchor(point, torch.tensor([0.5], dtype=torch.float64))

    step_with_gradient(optimizer, point, 0.5)

    assert point.tolist() == pytest.approx([0.9]), f"closeness 0 must leave the plain sign step, got {point.tolist()}"


# --- step-size schedules ----------------------------------------------------------------------------------------


def test_step_size_constant():
    values = [step_size_at(0.2, "constant", k, None) for k in range(4)]

    assert values == [0.2, 0.2, 0.2, 0.2], f"the constant schedule must return lr at every step, got {values}"


def test_step_size_inverse_sqrt():
    values = [step_size_at(0.2, "inverse_sqrt", k, None) for k in range(4)]

    expected = [0.2, 0.2 / math.sqrt(2), 0.2 / math.sqrt(3), 0.1]
    assert values == pytest.approx(expected), f"inverse_sqrt must give lr / sqrt(k + 1), got {values}"


def test_step_size_inverse_sqrt_total():
    values = [step_size_at(0.2, "inverse_sqrt_total", k, 16) for k in range(3)]

    assert values == pytest.approx([0.05, 0.05, 0.05]), f"inverse_sqrt_total must give lr / sqrt(K), got {values}"


def test_step_size_inverse_sqrt_total_needs_total():
    with pytest.raises(ValueError, match="total_steps, got None"):
        step_size_at(0.2, "inverse_sqrt_total", 0, None)


def test_step_size_rejects_unknown_schedule():
    with pytest.raises(ValueError, match="'cosine'"):
        step_size_at(0.2, "cosine", 0, None)


def test_optimizer_applies_inverse_sqrt_schedule():
    point = make_point([0.0])
    optimizer = PerturbedSignGradient([point], lr=0.2, lr_schedule="inverse_sqrt")

    for _ in range(3):
        step_with_gradient(optimizer, point, 1.0)

    expected = 0.2 * (1.0 + 1.0 / math.sqrt(2) + 1.0 / math.sqrt(3))
    assert point.tolist() == pytest.approx([expected]), (
        f"three inverse_sqrt steps of lr 0.2 must sum to {expected}, got {point.tolist()}"
    )


def test_optimizer_applies_inverse_sqrt_total_schedule():
    point = make_point([0.0])
    optimizer = PerturbedSignGradient([point], lr=0.2, lr_schedule="inverse_sqrt_total", total_steps=4)

    for _ in range(4):
        step_with_gradient(optimizer, point, 1.0)

    assert point.tolist() == pytest.approx([0.4]), (
        f"four steps of 0.2 / sqrt(4) must sum to 0.4, got {point.tolist()}"
    )


def test_schedule_names():
    assert set(STEP_SIZE_SCHEDULES) == {"constant", "inverse_sqrt", "inverse_sqrt_total"}, (
        f"unexpected step size schedules {STEP_SIZE_SCHEDULES}"
    )
    assert set(CLOSENESS_SCHEDULES) == {"constant", "inverse", "exponential", "linear"}, (
        f"unexpected closeness schedules {CLOSENESS_SCHEDULES}"
    )


# --- closeness schedules ----------------------------------------------------------------------------------------


def test_closeness_schedule_constant():
    schedule = ClosenessSchedule(0.5)

    values = [schedule(t) for t in (1, 2, 10)]
    assert values == [0.5, 0.5, 0.5], f"the constant schedule must return 0.5 at every step, got {values}"


def test_closeness_schedule_inverse():
    schedule = ClosenessSchedule(0.6, kind="inverse")

    values = [schedule(t) for t in (1, 2, 3)]
    assert values == pytest.approx([0.6, 0.3, 0.2]), f"the inverse schedule must return lambda / t, got {values}"


def test_closeness_schedule_exponential():
    schedule = ClosenessSchedule(0.5, kind="exponential", rate=0.1)

    values = [schedule(t) for t in (1, 5)]
    expected = [0.5 * math.exp(-0.1), 0.5 * math.exp(-0.5)]
    assert values == pytest.approx(expected), f"the exponential schedule must return lambda exp(-r t), got {values}"


def test_closeness_schedule_linear():
    schedule = ClosenessSchedule(0.8, kind="linear", total_steps=4)

    values = [schedule(t) for t in (1, 2, 4, 6)]
    assert values == pytest.approx([0.6, 0.4, 0.0, 0.0]), (
        f"the linear schedule must return lambda max(0, 1 - t / T), got {values}"
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"initial": -0.1}, "-0.1"),
        ({"initial": float("nan")}, "nan"),
        ({"initial": 1.0, "kind": "cosine"}, "'cosine'"),
        ({"initial": 1.0, "kind": "exponential"}, "got None"),
        ({"initial": 1.0, "kind": "exponential", "rate": 0.0}, "got 0.0"),
        ({"initial": 1.0, "kind": "linear"}, "got None"),
        ({"initial": 1.0, "kind": "linear", "total_steps": 0}, "got 0"),
    ],
)
def test_closeness_schedule_rejects(arguments, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ClosenessSchedule(**arguments)


def test_closeness_schedule_rejects_step_zero():
    schedule = ClosenessSchedule(1.0, kind="inverse")

    with pytest.raises(ValueError, match="got 0"):
        schedule(0)


# --- 8-bit quantisation -----------------------------------------------------------------------------------------


def run_quantised_search(anchor: torch.Tensor, epsilon: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    point = anchor.clone().requires_grad_(True)
    optimizer = PerturbedSignGradient([point], lr=0.013, epsilon=epsilon, box=(0.0, 1.0), quantize_bits=8)
    for _ in range(10):
        step_with_gradient(optimizer, point, torch.randn(anchor.shape, generator=generator, dtype=anchor.dtype))
    return point.detach()


def test_quantisation_lands_on_grid():
    generator = torch.Generator().manual_seed(0)
    anchor = torch.randint(0, 256, (512,), generator=generator).to(torch.float32) / 255.0

    point = run_quantised_search(anchor, epsilon=0.02, seed=1)

    levels = point * 255.0
    off_grid = float((levels - levels.round()).abs().max())
    assert off_grid < 1e-3, f"iterates must lie on the 8-bit grid k/255; the largest offset is {off_grid} levels"
    assert float(point.min()) >= 0.0, f"quantised iterates went below the box (0, 1): {float(point.min())}"
    assert float(point.max()) <= 1.0, f"quantised iterates went above the box (0, 1): {float(point.max())}"


def test_quantisation_stays_in_ball_on_grid_anchor():
    generator = torch.Generator().manual_seed(0)
    anchor = torch.randint(0, 256, (512,), generator=generator).to(torch.float32) / 255.0

    point = run_quantised_search(anchor, epsilon=0.02, seed=2)

    distance = float((point - anchor).abs().max())
    assert distance <= 0.02 + 1e-6, f"quantised iterates are {distance} from the anchor, beyond epsilon 0.02"
    assert distance > 0.0, "the quantised search never moved; the test would prove nothing"


def test_quantisation_stays_in_ball_off_grid_anchor():
    generator = torch.Generator().manual_seed(0)
    anchor = torch.rand(512, generator=generator, dtype=torch.float32)

    point = run_quantised_search(anchor, epsilon=0.01, seed=3)

    distance = float((point - anchor).abs().max())
    levels = point * 255.0
    off_grid = float((levels - levels.round()).abs().max())
    assert distance <= 0.01 + 1e-6, f"quantised iterates are {distance} from an off-grid anchor, beyond epsilon 0.01"
    assert off_grid < 1e-3, f"iterates must lie on the 8-bit grid; the largest offset is {off_grid} levels"


# --- validation -------------------------------------------------------------------------------------------------


def point_for_validation() -> list[torch.Tensor]:
    return [torch.zeros(2, requires_grad=True)]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"lr": 0.0}, "Invalid lr (step size): 0.0"),
        ({"lr": -0.1}, "Invalid lr (step size): -0.1"),
        ({"lr": float("inf")}, "Invalid lr (step size): inf"),
        ({"lr": True}, "Invalid lr (step size): True"),
        ({"lr": 0.1, "epsilon": 0.0}, "Invalid epsilon: 0.0"),
        ({"lr": 0.1, "epsilon": -1.0}, "Invalid epsilon: -1.0"),
        ({"lr": 0.1, "epsilon": float("nan")}, "Invalid epsilon: nan"),
        ({"lr": 0.1, "box": (1.0, 0.0)}, "Invalid box: (1.0, 0.0)"),
        ({"lr": 0.1, "box": (0.5, 0.5)}, "Invalid box: (0.5, 0.5)"),
        ({"lr": 0.1, "box": (0.0, 1.0, 2.0)}, "Invalid box: (0.0, 1.0, 2.0)"),
        ({"lr": 0.1, "box": (0.0, float("inf"))}, "Invalid box: (0.0, inf)"),
        ({"lr": 0.1, "noise": "gaussian"}, "Invalid noise law 'gaussian'"),
        ({"lr": 0.1, "noise_scale": -1.0}, "Invalid noise_scale: -1.0"),
        ({"lr": 0.1, "noise_scale": float("nan")}, "Invalid noise_scale: nan"),
        ({"lr": 0.1, "closeness": -0.5}, "Invalid closeness: -0.5"),
        ({"lr": 0.1, "closeness": float("inf")}, "Invalid closeness: inf"),
        ({"lr": 0.1, "lr_schedule": "cosine"}, "Invalid lr_schedule 'cosine'"),
        ({"lr": 0.1, "total_steps": 0}, "Invalid total_steps: 0"),
        ({"lr": 0.1, "total_steps": 2.5}, "Invalid total_steps: 2.5"),
        ({"lr": 0.1, "lr_schedule": "inverse_sqrt_total"}, "needs total_steps"),
        ({"lr": 0.1, "box": (0.0, 1.0), "quantize_bits": 0}, "Invalid quantize_bits: 0"),
        ({"lr": 0.1, "box": (0.0, 1.0), "quantize_bits": 17}, "Invalid quantize_bits: 17"),
        ({"lr": 0.1, "box": (0.0, 1.0), "quantize_bits": 8.0}, "Invalid quantize_bits: 8.0"),
        ({"lr": 0.1, "quantize_bits": 8}, "quantize_bits needs box"),
    ],
)
def test_constructor_rejects_invalid(arguments, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        PerturbedSignGradient(point_for_validation(), **arguments)


def test_anchor_outside_box_rejected():
    point = make_point([0.5, 1.5])
    optimizer = PerturbedSignGradient([point], lr=0.1, box=(0.0, 1.0))
    point.grad = torch.ones(2, dtype=torch.float64)

    with pytest.raises(ValueError, match=re.escape("values in [0.5, 1.5], outside box=(0, 1)")):
        optimizer.step()


def test_set_anchor_outside_box_rejected():
    point = make_point([0.5])
    optimizer = PerturbedSignGradient([point], lr=0.1, box=(0.0, 1.0))
    optimizer.set_anchor(point, torch.tensor([-0.25], dtype=torch.float64))
    point.grad = torch.ones(1, dtype=torch.float64)

    with pytest.raises(ValueError, match=re.escape("values in [-0.25, -0.25], outside box=(0, 1)")):
        optimizer.step()
