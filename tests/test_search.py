"""Tests of the Bernoulli connectivity search: sampling, shaping, estimators and updates.

Run ``pytest -s tests/test_search.py`` to see the numbers that the pure-noise,
hidden-target and estimator tests print.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import warnings

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sb3_satr.bits import n_words, pack_bits, unpack_bits
from sb3_satr.search import _kernels
from sb3_satr.search import (
    DIAGNOSTIC_KEYS,
    BernoulliUpdate,
    ECUpdate,
    NaturalGradientUpdate,
    SATRUpdate,
    bernoulli_kl,
    centered_ranks,
    estimate_gradient,
    mean_entropy,
    mode_connections,
    natural_gradient,
    sample_population,
)

EPS = 1e-3


UPDATE_FACTORIES = {
    "SATR-variance-signal": SATRUpdate,
    "SATR-split_half-snr": lambda: SATRUpdate(signal_estimator="split_half", budget="snr", target_kl=1.0),
    "EC": ECUpdate,
    "NaturalGradient": NaturalGradientUpdate,
}

# Each test builds its own update, because ECUpdate keeps Adam moments between steps.
UPDATES = pytest.mark.parametrize("make_update", list(UPDATE_FACTORIES.values()), ids=list(UPDATE_FACTORIES))


def brute_force_kl(q: np.ndarray, p: np.ndarray) -> float:
    total = 0.0
    for qj, pj in zip(q.tolist(), p.tolist()):
        if qj > 0:
            total += qj * math.log(qj / pj)
        if qj < 1:
            total += (1 - qj) * math.log((1 - qj) / (1 - pj))
    return total


def random_population(seed: int, n: int = 24, d: int = 150) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rho = rng.uniform(0.05, 0.95, d)
    bits = sample_population(rho, n, seed)
    fitness = rng.standard_normal(n)
    return rho, bits, fitness


# --- Sampling -------------------------------------------------------------------------


def test_sample_shape_dtype_and_padding():
    rho = np.full(130, 0.9)
    bits = sample_population(rho, 7, 3)
    assert bits.dtype == np.uint64
    assert bits.shape == (7, n_words(130))
    padding_mask = ~np.uint64((1 << (130 - 128)) - 1)
    assert np.all(bits[:, -1] & padding_mask == 0)


def test_sample_reproducible_from_seed():
    rho = np.random.default_rng(0).uniform(0, 1, 500)
    first = sample_population(rho, 16, 12345)
    again = sample_population(rho, 16, 12345)
    other = sample_population(rho, 16, 12346)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_sample_member_independent_of_population():
    rho = np.random.default_rng(1).uniform(0, 1, 300)
    full = sample_population(rho, 40, 99)
    members = np.array([39, 3, 3, 17], dtype=np.int64)
    subset = sample_population(rho, 40, 99, members=members)
    larger_n = sample_population(rho, 1000, 99, members=members)
    assert np.array_equal(subset, full[members])
    assert np.array_equal(larger_n, full[members])


def test_sample_independent_of_thread_count(monkeypatch):
    # 33 members of 2,048 words exceed PARALLEL_MIN_WORDS, so the parallel kernel runs.
    rho = np.random.default_rng(2).uniform(0, 1, 64 * 2048)
    parallel_threshold = _kernels.PARALLEL_MIN_WORDS
    parallel = sample_population(rho, 33, 4)
    default_threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single_thread = sample_population(rho, 33, 4)
    finally:
        numba.set_num_threads(default_threads)
    monkeypatch.setattr(_kernels, "PARALLEL_MIN_WORDS", 2**62)
    serial = sample_population(rho, 33, 4)
    assert parallel.size >= parallel_threshold
    assert np.array_equal(single_thread, parallel)
    assert np.array_equal(serial, parallel)


def test_sample_frequencies_match_probabilities():
    n = 20_000
    rho = np.concatenate([[0.0, 1.0, EPS, 1 - EPS], np.linspace(0.01, 0.99, 193)])
    theta = unpack_bits(sample_population(rho, n, 2024), rho.shape[0])
    frequency = theta.mean(axis=0)
    tolerance = 5 * np.sqrt(rho * (1 - rho) / n) + 1e-12
    assert np.all(theta[:, 0] == 0)
    assert np.all(theta[:, 1] == 1)
    assert np.all(np.abs(frequency - rho) <= tolerance)


def test_sample_neighbours_uncorrelated():
    n, d = 4000, 256
    theta = unpack_bits(sample_population(np.full(d, 0.5), n, 8), d).astype(np.float64)
    centered = theta - 0.5
    across_parameters = np.mean(centered[:, 1:] * centered[:, :-1]) / 0.25
    across_members = np.mean(centered[1:] * centered[:-1]) / 0.25
    limit = 5 / math.sqrt(n * (d - 1))
    assert abs(across_parameters) < limit
    assert abs(across_members) < limit


@pytest.mark.parametrize("seed", [-1, 2**63, 1.5, True, "7"])
def test_sample_rejects_invalid_seed(seed):
    with pytest.raises(ValueError, match="seed"):
        sample_population(np.full(10, 0.5), 4, seed)


@pytest.mark.parametrize("members", [np.array([0, 4]), np.array([-1]), np.array([0.5]), np.zeros((2, 2), dtype=int)])
def test_sample_rejects_invalid_members(members):
    with pytest.raises(ValueError, match="members"):
        sample_population(np.full(10, 0.5), 4, 0, members=members)


def test_sample_rejects_invalid_n():
    with pytest.raises(ValueError, match="n must be a positive integer"):
        sample_population(np.full(10, 0.5), 0, 0)


def test_mode_connections_threshold():
    rho = np.array([0.2, 0.5, 0.5000001, 0.9, 0.0, 1.0])
    mode = mode_connections(rho)
    assert mode.dtype == np.bool_
    assert mode.tolist() == [False, False, True, True, False, True]


def test_sample_memory_stays_under_2gb():
    # A fresh interpreter, so that the peak resident set size measures this sampling
    # (plus the imports of sb3_satr) and nothing else of the test session.
    script = textwrap.dedent(
        """
        import resource
        import numpy as np
        from sb3_satr.search import sample_population
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        bits = sample_population(np.full(250_000, 0.5), 10_240, 7)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(bits.nbytes, before * 1024, peak * 1024)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    output_bytes, before_bytes, peak_bytes = (int(value) for value in result.stdout.split())
    print(
        f"\nsampling n=10,240, d=250,000: output {output_bytes / 2**20:.0f} MiB, "
        f"peak RSS {peak_bytes / 2**20:.0f} MiB ({before_bytes / 2**20:.0f} MiB after imports)"
    )
    assert output_bytes == 10_240 * 3907 * 8
    assert peak_bytes < 2 * 2**30


# --- Fitness shaping and the natural gradient ------------------------------------------


def test_centered_ranks_values():
    weights = centered_ranks(np.array([3.0, -1.0, 10.0, 0.0, 2.0]))
    assert np.allclose(weights, [0.25, -0.5, 0.5, -0.25, 0.0])


def test_centered_ranks_ties_share_average():
    weights = centered_ranks(np.array([1.0, 5.0, 1.0, 1.0, 7.0]))
    assert np.allclose(weights, [-0.25, 0.25, -0.25, -0.25, 0.5])
    assert abs(weights.sum()) < 1e-12


def test_centered_ranks_order_invariant():
    rng = np.random.default_rng(3)
    fitness = rng.integers(0, 5, size=50).astype(np.float64)
    permutation = rng.permutation(50)
    assert np.array_equal(centered_ranks(fitness)[permutation], centered_ranks(fitness[permutation]))


def test_centered_ranks_range_and_sum():
    weights = centered_ranks(np.random.default_rng(4).standard_normal(101))
    assert weights.min() == -0.5
    assert weights.max() == 0.5
    assert abs(weights.sum()) < 1e-12


def test_centered_ranks_degenerate_inputs():
    assert centered_ranks(np.array([4.2])).tolist() == [0.0]
    assert centered_ranks(np.full(6, 3.0)).tolist() == [0.0] * 6


@pytest.mark.parametrize("fitness", [np.array([1.0, np.nan]), np.array([np.inf, 0.0]), np.zeros((2, 2)), np.array([])])
def test_centered_ranks_rejects_invalid(fitness):
    with pytest.raises(ValueError, match="fitness"):
        centered_ranks(fitness)


def test_natural_gradient_matches_float_reference():
    rho, bits, fitness = random_population(5)
    weights = centered_ranks(fitness)
    theta = unpack_bits(bits, rho.shape[0]).astype(np.float64)
    expected = np.mean(weights[:, None] * (theta - rho), axis=0)
    assert np.allclose(natural_gradient(rho, bits, weights), expected, rtol=0, atol=1e-14)
    assert np.allclose(natural_gradient(rho, theta.astype(bool), weights), expected, rtol=0, atol=1e-14)


def test_natural_gradient_independent_of_thread_count(monkeypatch):
    # 50 members of 2,188 words exceed PARALLEL_MIN_WORDS, so the parallel kernel runs.
    rho = np.random.default_rng(6).uniform(0.1, 0.9, 140_000)
    bits = sample_population(rho, 50, 6)
    weights = centered_ranks(np.random.default_rng(6).standard_normal(50))
    parallel_threshold = _kernels.PARALLEL_MIN_WORDS
    parallel = natural_gradient(rho, bits, weights)
    default_threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single_thread = natural_gradient(rho, bits, weights)
    finally:
        numba.set_num_threads(default_threads)
    monkeypatch.setattr(_kernels, "PARALLEL_MIN_WORDS", 2**62)
    serial = natural_gradient(rho, bits, weights)
    assert bits.size >= parallel_threshold
    assert np.array_equal(single_thread, parallel)
    assert np.array_equal(serial, parallel)


@pytest.mark.parametrize("estimator", ["variance", "split_half"])
def test_energies_match_float_reference(estimator):
    rho, bits, fitness = random_population(7, n=21)
    weights = centered_ranks(fitness)
    theta = unpack_bits(bits, rho.shape[0]).astype(np.float64)
    fisher = 1 / (rho * (1 - rho))
    terms = weights[:, None] * (theta - rho)
    gradient = terms.mean(axis=0)
    n = terms.shape[0]
    if estimator == "variance":
        noise = np.sum((terms - gradient) ** 2 @ fisher) / (n * (n - 1))
        signal = max(gradient**2 @ fisher - noise, 0.0)
    else:
        first, second = terms[: n // 2].mean(axis=0), terms[n // 2 :].mean(axis=0)
        signal = max(first * second @ fisher, 0.0)
        noise = (n // 2) * (n - n // 2) / n**2 * ((first - second) ** 2 @ fisher)

    estimate = estimate_gradient(rho, bits, weights, estimator)
    assert np.allclose(estimate.gradient, gradient, rtol=0, atol=1e-14)
    assert estimate.gradient_energy == pytest.approx(gradient**2 @ fisher, rel=1e-10)
    assert estimate.noise_energy == pytest.approx(noise, rel=1e-10)
    assert estimate.signal_energy == pytest.approx(signal, rel=1e-10, abs=1e-14)


@pytest.mark.parametrize("estimator", ["variance", "split_half"])
def test_signal_estimator_unbiased_for_linear_fitness(estimator):
    """For fitness ``c . theta + noise`` the mean estimated signal energy matches ``||E[g]||_F^2``.

    The reference comes from the spread of ``g`` across independent populations, which
    does not use the estimator under test: ``||mean g||_F^2`` minus the variance of that
    mean. For a Gaussian-like fitness with a fraction ``R^2`` of explained variance,
    centered ranks also give ``||E[g]||_F^2 ~ R^2 / (4 pi)``, printed as a check.
    """
    d, n, n_draws = 200, 128, 400
    rng = np.random.default_rng(11)
    rho = rng.uniform(0.2, 0.8, d)
    coefficients = rng.standard_normal(d)
    fitness_variance = float(np.sum(coefficients**2 * rho * (1 - rho)))
    noise_sd = math.sqrt(fitness_variance)
    fisher = 1 / (rho * (1 - rho))

    gradients, signals, noises = [], [], []
    for draw in range(n_draws):
        bits = sample_population(rho, n, 1000 + draw)
        theta = unpack_bits(bits, d).astype(np.float64)
        fitness = theta @ coefficients + noise_sd * rng.standard_normal(n)
        estimate = estimate_gradient(rho, bits, centered_ranks(fitness), estimator)
        gradients.append(estimate.gradient)
        signals.append(estimate.signal_energy)
        noises.append(estimate.noise_energy)

    gradients = np.array(gradients)
    spread = float(gradients.var(axis=0, ddof=1) @ fisher)
    true_signal = float(gradients.mean(axis=0) ** 2 @ fisher) - spread / n_draws
    mean_signal = float(np.mean(signals))
    standard_error = float(np.std(signals) / math.sqrt(n_draws))
    print(
        f"\n{estimator}: mean signal_energy {mean_signal:.5f} +- {standard_error:.5f}, "
        f"reference {true_signal:.5f}, R^2/(4 pi) {0.5 / (4 * math.pi):.5f}; "
        f"mean noise_energy {np.mean(noises):.4f}, reference {spread:.4f}"
    )
    assert true_signal == pytest.approx(0.5 / (4 * math.pi), rel=0.1)
    assert mean_signal == pytest.approx(true_signal, rel=0.05)
    assert abs(mean_signal - true_signal) < 4 * standard_error + 0.01 * true_signal
    assert float(np.mean(noises)) == pytest.approx(spread, rel=0.05)


# --- Divergence and entropy -----------------------------------------------------------


def test_bernoulli_kl_matches_brute_force():
    rng = np.random.default_rng(8)
    q = rng.uniform(0, 1, 300)
    p = rng.uniform(0.01, 0.99, 300)
    q[:3] = [0.0, 1.0, EPS]
    assert bernoulli_kl(q, p) == pytest.approx(brute_force_kl(q, p), rel=1e-12)


def test_bernoulli_kl_edge_cases():
    half = np.full(4, 0.5)
    assert bernoulli_kl(half, half) == 0.0
    assert bernoulli_kl(np.array([0.0, 1.0]), np.array([0.0, 1.0])) == 0.0
    assert bernoulli_kl(np.array([0.3]), np.array([0.0])) == math.inf
    assert bernoulli_kl(np.array([0.0]), np.array([0.5])) == pytest.approx(math.log(2))


def test_bernoulli_kl_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        bernoulli_kl(np.full(3, 0.5), np.full(4, 0.5))


def test_mean_entropy_values():
    rho = np.array([0.5, 0.0, 1.0, 0.1])
    expected = (math.log(2) + 0 + 0 - (0.1 * math.log(0.1) + 0.9 * math.log(0.9))) / 4
    assert mean_entropy(rho) == pytest.approx(expected, rel=1e-12)


# --- Updates: interface and validation ------------------------------------------------


@UPDATES
def test_update_returns_clipped_float64_and_all_diagnostics(make_update):
    rho, bits, fitness = random_population(9)
    rho[:4] = [0.0, 1.0, EPS, 1 - EPS]
    new, diagnostics = make_update().step(rho, bits, fitness)
    assert new.dtype == np.float64
    assert new.shape == rho.shape
    assert new.min() >= EPS
    assert new.max() <= 1 - EPS
    assert tuple(diagnostics) == DIAGNOSTIC_KEYS
    assert all(type(value) is float for value in diagnostics.values())
    assert not any(math.isnan(value) for value in diagnostics.values())


@UPDATES
def test_update_does_not_modify_inputs(make_update):
    rho, bits, fitness = random_population(10)
    copies = rho.copy(), bits.copy(), fitness.copy()
    make_update().step(rho, bits, fitness)
    assert np.array_equal(rho, copies[0])
    assert np.array_equal(bits, copies[1])
    assert np.array_equal(fitness, copies[2])


@pytest.mark.parametrize("make_update", [SATRUpdate, ECUpdate, NaturalGradientUpdate])
def test_update_bool_and_packed_agree(make_update):
    rho, bits, fitness = random_population(11)
    from_packed = make_update().step(rho, bits, fitness)
    from_bool = make_update().step(rho, unpack_bits(bits, rho.shape[0]), fitness)
    assert np.array_equal(from_packed[0], from_bool[0])
    assert from_packed[1] == from_bool[1]


@UPDATES
def test_update_equal_fitness_keeps_probabilities(make_update):
    rho, bits, _ = random_population(12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new, diagnostics = make_update().step(rho, bits, np.full(bits.shape[0], 3.0))
    assert np.array_equal(new, rho)
    assert diagnostics["kl"] == 0.0
    assert diagnostics["signal_energy"] == 0.0
    assert diagnostics["snr"] == 0.0
    assert not any(math.isnan(value) for value in diagnostics.values())


@UPDATES
def test_update_single_member_keeps_probabilities(make_update):
    rho, bits, _ = random_population(13, n=1)
    new, diagnostics = make_update().step(rho, bits, np.array([1.0]))
    assert np.array_equal(new, rho)
    assert diagnostics["kl"] == 0.0


@pytest.mark.parametrize(
    ("probabilities", "match"),
    [
        (np.full(150, 0.5, dtype=np.float32), "float64"),
        (np.full((150, 1), 0.5), "shape"),
        (np.r_[np.full(149, 0.5), np.nan], "finite"),
        (np.r_[np.full(149, 0.5), 1.5], r"\[0, 1\]"),
        (np.r_[np.full(149, 0.5), -0.1], r"\[0, 1\]"),
    ],
)
@UPDATES
def test_update_rejects_invalid_probabilities(make_update, probabilities, match):
    _, bits, fitness = random_population(14)
    with pytest.raises(ValueError, match=match):
        make_update().step(probabilities, bits, fitness)


@pytest.mark.parametrize(
    ("samples", "match"),
    [
        (np.zeros((24, 150), dtype=np.int64), "dtype int64"),
        (np.zeros((24, 149), dtype=bool), r"shape \(n, 150\)"),
        (np.zeros((24, 2), dtype=np.uint64), r"shape \(n, 3\)"),
        (np.zeros(150, dtype=bool), "2-D"),
    ],
)
@UPDATES
def test_update_rejects_invalid_samples(make_update, samples, match):
    rho, _, fitness = random_population(15)
    with pytest.raises(ValueError, match=match):
        make_update().step(rho, samples, fitness)


@pytest.mark.parametrize(
    ("fitness", "match"),
    [
        (np.r_[np.zeros(23), np.nan], "member 23"),
        (np.r_[np.zeros(23), -np.inf], "finite"),
        (np.zeros(23), r"shape \(24,\)"),
        (np.array(["a"] * 24), "real numbers"),
    ],
)
@UPDATES
def test_update_rejects_invalid_fitness(make_update, fitness, match):
    rho, bits, _ = random_population(16)
    with pytest.raises(ValueError, match=match):
        make_update().step(rho, bits, fitness)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target_kl": 0.0}, "target_kl"),
        ({"target_kl": math.inf}, "target_kl"),
        ({"signal_estimator": "mean"}, "signal_estimator"),
        ({"signal_estimator": "ema", "ema_decay": 0.0}, "ema_decay"),
        ({"kl_reduction": "max"}, "kl_reduction"),
        ({"budget": "kl"}, "budget"),
        ({"line_search_shrinking_factor": 1.0}, "line_search_shrinking_factor"),
        ({"line_search_max_iter": -1}, "line_search_max_iter"),
        ({"line_search_max_iter": 2.0}, "line_search_max_iter"),
        ({"max_step_size": 0.0}, "max_step_size"),
        ({"eps": 0.5}, "eps"),
        ({"eps": 0.0}, "eps"),
    ],
)
def test_satr_rejects_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SATRUpdate(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"learning_rate": -0.1}, "learning_rate"),
        ({"learning_rate": math.nan}, "learning_rate"),
        ({"beta1": 1.0}, "beta1"),
        ({"beta2": -0.1}, "beta2"),
        ({"adam_eps": 0.0}, "adam_eps"),
        ({"eps": 1.0}, "eps"),
    ],
)
def test_ec_rejects_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ECUpdate(**kwargs)


@pytest.mark.parametrize("make_update", [ECUpdate, NaturalGradientUpdate])
def test_learning_rate_settable_between_steps(make_update):
    rho, bits, fitness = random_population(17)
    update = make_update()
    update.learning_rate = 0.0
    new, diagnostics = update.step(rho, bits, fitness)
    assert np.array_equal(new, rho)
    assert diagnostics["step_size"] == 0.0
    with pytest.raises(ValueError, match="learning_rate"):
        update.learning_rate = -1.0


# --- Updates: behaviour ----------------------------------------------------------------


@st.composite
def search_problems(draw):
    d = draw(st.integers(1, 40))
    n = draw(st.integers(1, 24))
    near_bounds = st.sampled_from([EPS, EPS * 1.01, 2e-3, 0.01, 0.99, 1 - 2e-3, 1 - EPS * 1.01, 1 - EPS])
    inside = st.floats(EPS, 1 - EPS, allow_nan=False)
    rho = np.array(draw(st.lists(st.one_of(near_bounds, inside), min_size=d, max_size=d)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if draw(st.booleans()):
        samples = rng.random((n, d)) < rho
    else:
        samples = rng.random((n, d)) < 0.5
    if draw(st.booleans()):
        fitness = rng.integers(0, 3, n).astype(np.float64)
    else:
        fitness = rng.standard_normal(n) * 10.0 ** draw(st.integers(-6, 6))
    return rho, samples, fitness


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    problem=search_problems(),
    target_kl=st.sampled_from([1e-3, 1.0, 50.0, 1e4]),
    signal_estimator=st.sampled_from(["variance", "split_half", "ema"]),
    budget=st.sampled_from(["signal", "snr"]),
    max_step_size=st.sampled_from([None, 0.05]),
    kl_reduction=st.sampled_from(["sum", "mean"]),
)
def test_satr_kl_within_budget(problem, target_kl, signal_estimator, budget, max_step_size, kl_reduction):
    rho, samples, fitness = problem
    update = SATRUpdate(
        target_kl=target_kl,
        signal_estimator=signal_estimator,
        budget=budget,
        max_step_size=max_step_size,
        kl_reduction=kl_reduction,
    )
    new, diagnostics = update.step(rho, samples, fitness)
    kl_budget = update.kl_budget(diagnostics["signal_energy"], diagnostics["noise_energy"])
    n_summed = rho.shape[0] if kl_reduction == "mean" else 1
    realised = bernoulli_kl(new, rho) / n_summed
    assert realised <= kl_budget * (1 + 1e-12)
    assert diagnostics["kl"] == pytest.approx(realised, rel=1e-12, abs=1e-300)
    assert new.min() >= EPS
    assert new.max() <= 1 - EPS
    assert not any(math.isnan(value) for value in diagnostics.values())
    if max_step_size is not None:
        assert diagnostics["step_size"] <= max_step_size


def half_count_population() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return rho = 0.5 and a population whose fitness counts the connections in the first half."""
    rho = np.full(500, 0.5)
    bits = sample_population(rho, 32, 18)
    fitness = unpack_bits(bits, 500)[:, :250].sum(axis=1).astype(np.float64)
    return rho, bits, fitness


def test_satr_failed_line_search_keeps_probabilities():
    # At rho = 0.5 the exact KL of a step exceeds its quadratic estimate (the quartic term
    # is positive), so the first trial always overshoots the budget. Without shrinks the
    # line search must fail and leave the probabilities unchanged.
    rho, bits, fitness = half_count_population()
    new, diagnostics = SATRUpdate(line_search_max_iter=0).step(rho, bits, fitness)
    assert diagnostics["signal_energy"] > 0.0
    assert diagnostics["is_line_search_success"] == 0.0
    assert diagnostics["kl"] == 0.0
    assert diagnostics["step_size"] == 0.0
    assert np.array_equal(new, rho)


def test_satr_line_search_counts_shrinks():
    rho, bits, fitness = half_count_population()
    _, diagnostics = SATRUpdate(line_search_max_iter=10).step(rho, bits, fitness)
    assert diagnostics["is_line_search_success"] == 1.0
    assert diagnostics["line_search_steps"] == 1.0


def test_ec_first_step_moves_by_learning_rate():
    rho = np.full(400, 0.5)
    bits = sample_population(rho, 16, 19)
    fitness = np.random.default_rng(19).standard_normal(16)
    gradient = natural_gradient(rho, bits, centered_ranks(fitness))
    new, _ = ECUpdate().step(rho, bits, fitness)
    # Adam's first step is learning_rate * g / (|g| + adam_eps). Where every member agrees
    # on a connection, g is 0 up to rounding (about 1e-17) and the step is about 1e-10.
    expected = 0.15 * np.abs(gradient) / (np.abs(gradient) + 1e-8)
    moved = np.abs(gradient) > 1e-12
    assert np.allclose(np.abs(new - rho), expected, rtol=1e-9, atol=1e-15)
    assert np.all(np.abs(new - rho)[moved] > 0.15 - 1e-5)
    assert np.array_equal(np.sign(new - rho)[moved], np.sign(gradient[moved]))
    assert np.all(np.abs(new - rho)[~moved] < 1e-9)


def test_ec_state_round_trip():
    rho, bits, fitness = random_population(20)
    original = ECUpdate()
    rho_1, _ = original.step(rho, bits, fitness)
    restored = ECUpdate()
    restored.set_state(original.get_state())
    state = restored.get_state()
    assert state["first_moment"].dtype == np.float64
    assert state["step_count"].dtype == np.int64
    assert int(state["step_count"]) == 1
    _, bits_2, fitness_2 = random_population(21)
    assert np.array_equal(original.step(rho_1, bits_2, fitness_2)[0], restored.step(rho_1, bits_2, fitness_2)[0])


def test_ec_state_rejects_mismatch():
    update = ECUpdate()
    with pytest.raises(ValueError, match="keys"):
        update.set_state({"first_moment": np.zeros(3)})
    with pytest.raises(ValueError, match="same shape"):
        update.set_state(
            {"first_moment": np.zeros(3), "second_moment": np.zeros(4), "step_count": np.array(1)}
        )
    with pytest.raises(ValueError, match="step_count"):
        update.set_state(
            {"first_moment": np.zeros(3), "second_moment": np.zeros(3), "step_count": np.array(0)}
        )


def test_ec_rejects_size_change():
    update = ECUpdate()
    rho, bits, fitness = random_population(22)
    update.step(rho, bits, fitness)
    smaller_rho, smaller_bits, smaller_fitness = random_population(22, d=100)
    with pytest.raises(ValueError, match="new ECUpdate"):
        update.step(smaller_rho, smaller_bits, smaller_fitness)


def test_natural_gradient_update_has_empty_state():
    update = NaturalGradientUpdate()
    assert update.get_state() == {}
    with pytest.raises(ValueError, match="no internal state"):
        update.set_state({"first_moment": np.zeros(2)})


def test_satr_ema_state_round_trip():
    original = SATRUpdate(signal_estimator="ema", target_kl=5.0)
    rho, bits, fitness = random_population(30)
    rho_1, _ = original.step(rho, bits, fitness)
    restored = SATRUpdate(signal_estimator="ema", target_kl=5.0)
    restored.set_state(original.get_state())
    assert int(restored.get_state()["ema_count"]) == 1
    _, bits_2, fitness_2 = random_population(31)
    assert np.array_equal(original.step(rho_1, bits_2, fitness_2)[0], restored.step(rho_1, bits_2, fitness_2)[0])


def test_satr_state_rejects_wrong_keys():
    with pytest.raises(ValueError, match="keys"):
        SATRUpdate().set_state({"first_moment": np.zeros(2)})


def test_ema_signal_closer_to_truth_than_one_population():
    """With a persistent linear signal, the moving-average signal energy is far less noisy."""
    d, n, n_generations = 2000, 32, 60
    rng = np.random.default_rng(12)
    rho = np.full(d, 0.5)
    coefficients = np.zeros(d)
    coefficients[:200] = 1.0
    errors = {"variance": [], "ema": []}
    updates = {name: SATRUpdate(signal_estimator=name, target_kl=1e-9) for name in errors}
    gradients = []
    for generation in range(n_generations):
        bits = sample_population(rho, n, 7000 + generation)
        theta = unpack_bits(bits, d).astype(np.float64)
        fitness = theta @ coefficients + 5.0 * rng.standard_normal(n)
        gradients.append(estimate_gradient(rho, bits, centered_ranks(fitness)).gradient)
        for name, update in updates.items():
            _, diagnostics = update.step(rho, bits, fitness)
            errors[name].append(diagnostics["signal_energy"])
    fisher = 1 / (rho * (1 - rho))
    gradients = np.array(gradients)
    true_signal = float(gradients.mean(axis=0) ** 2 @ fisher) - float(gradients.var(axis=0, ddof=1) @ fisher) / n_generations
    late = slice(n_generations // 2, None)
    variance_error = float(np.mean(np.abs(np.array(errors["variance"][late]) - true_signal)))
    ema_error = float(np.mean(np.abs(np.array(errors["ema"][late]) - true_signal)))
    print(f"\ntrue signal {true_signal:.4f}: mean abs error variance {variance_error:.4f}, ema {ema_error:.4f}")
    assert true_signal > 0
    assert ema_error < 0.5 * variance_error


def mean_kl_under_pure_noise(update: BernoulliUpdate, d: int, n: int, n_generations: int) -> float:
    rng = np.random.default_rng(23)
    rho = np.full(d, 0.5)
    kls = []
    for generation in range(n_generations):
        bits = sample_population(rho, n, 500 + generation)
        rho, diagnostics = update.step(rho, bits, rng.standard_normal(n))
        kls.append(diagnostics["kl"])
    return float(np.mean(kls))


def test_satr_small_steps_under_pure_noise():
    d, n, n_generations = 2000, 64, 40
    satr_kl = mean_kl_under_pure_noise(SATRUpdate(), d, n, n_generations)
    ec_kl = mean_kl_under_pure_noise(ECUpdate(), d, n, n_generations)
    ratio = satr_kl / ec_kl
    print(
        f"\npure noise, d={d}, n={n}, {n_generations} generations: mean KL per step "
        f"SATR {satr_kl:.4f} nats, EC {ec_kl:.3f} nats, ratio {ratio:.4f}"
    )
    assert ec_kl > 0.0
    assert ratio < 0.1


def run_hidden_target(update: BernoulliUpdate, d: int, n: int, n_generations: int, noise_sd: float) -> tuple[int | None, float]:
    """Return the first generation whose mode matches 95 % of the target, and the final match."""
    rng = np.random.default_rng(24)
    target = rng.random(d) < 0.5
    packed_target = pack_bits(target)
    rho = np.full(d, 0.5)
    first_hit = None
    for generation in range(1, n_generations + 1):
        bits = sample_population(rho, n, 1_000_000 + generation)
        matches = d - np.bitwise_count(bits ^ packed_target).sum(axis=1)
        fitness = matches + noise_sd * rng.standard_normal(n)
        rho, _ = update.step(rho, bits, fitness)
        if first_hit is None and np.mean(mode_connections(rho) == target) >= 0.95:
            first_hit = generation
    return first_hit, float(np.mean(mode_connections(rho) == target))


def test_satr_finds_hidden_target():
    d, n, n_generations = 10_000, 64, 1200
    noise_sd = 25.0  # the match count itself has a standard deviation of 50 at rho = 0.5
    satr_hit, satr_match = run_hidden_target(SATRUpdate(), d, n, n_generations, noise_sd)
    ec_hit, ec_match = run_hidden_target(ECUpdate(), d, n, n_generations, noise_sd)
    print(
        f"\nhidden target, d={d}, n={n}, noise sd {noise_sd}, {n_generations} generations: "
        f"SATR mode match {satr_match:.4f} (95 % at generation {satr_hit}), "
        f"EC mode match {ec_match:.4f} (95 % at generation {ec_hit})"
    )
    assert satr_match >= 0.95
    assert satr_match > ec_match
