"""The selection procedure behind ``generate``'s family tables, on hand-made error tables with known answers."""

from __future__ import annotations

import argparse

import pytest
import torch

from benchmarks.defaults_bench import BED_GUARD, TIE_TOLERANCE, Unit, rmse, select_defaults, units, walk_output
from diffsample import steps
from diffsample.generate import FAMILY_TABLES, SHORT_SPAN_TABLES, default_choice
from diffsample.model_family import SHORT_SPAN_SUFFIX


def _unit(name: str, family: str = "edm") -> Unit:
    return Unit(name, family, "edm", lambda: None, None, "exact")


def test_smallest_worst_case_wins_not_the_best_on_one_unit():
    us = [_unit("a"), _unit("b")]
    table = {
        ("a", 4): {"x/s": 0.010, "y/s": 0.020, "z/s": 0.011},  # x best on a
        ("b", 4): {"x/s": 0.100, "y/s": 0.020, "z/s": 0.030},  # but 5× the best on b
    }
    (row,) = select_defaults(table, us, ranges=[(4,)])
    assert row.choice == "z/s"  # worst case 1.5 (b) beats x's 5 and y's 2
    assert row.worst == pytest.approx(1.5) and row.runner_up == "y/s" and row.runner_up_worst == pytest.approx(2.0)


def test_worst_cases_within_the_tolerance_tie_and_the_geometric_mean_decides():
    us = [_unit("a"), _unit("b"), _unit("c")]
    near = 1 + TIE_TOLERANCE / 2
    table = {
        ("a", 8): {"p/s": 0.010 * 2.0, "q/s": 0.010 * 2.0 * near, "best/s": 0.010},
        ("b", 8): {"p/s": 0.010 * 1.9, "q/s": 0.010, "best/s": 0.010 * 3.0},
        ("c", 8): {"p/s": 0.010 * 1.9, "q/s": 0.010, "best/s": 0.010 * 3.0},
    }
    (row,) = select_defaults(table, us, ranges=[(8,)])
    # p's worst case (2.0) is smaller than q's (2.0·near) by less than the tolerance: a tie, q's mean is smaller
    assert row.choice == "q/s" and row.runner_up == "p/s"
    table[("a", 8)]["q/s"] = 0.010 * 2.0 * (1 + 2 * TIE_TOLERANCE)  # now clearly worse in the worst case
    (row,) = select_defaults(table, us, ranges=[(8,)])
    assert row.choice == "p/s"


def test_networks_decide_and_a_bed_vetoes_only_beyond_the_guard():
    net = Unit("net", "flow", "flow", lambda: None, None, "teacher")
    bed = _unit("bed", "flow")
    inside = 0.9 * BED_GUARD
    table = {
        ("net", 4): {"n/s": 0.010, "b/s": 0.015},  # n best on the network, b 1.5× worse there
        ("bed", 4): {"n/s": 0.010 * inside, "b/s": 0.010},  # b best on the bed, n within the guard
    }
    (row,) = select_defaults(table, [net, bed], ranges=[(4,)])
    assert row.choice == "n/s" and row.network_worst == pytest.approx(1.0) and row.bed_worst == pytest.approx(inside)
    table[("bed", 4)]["n/s"] = 0.010 * 2 * BED_GUARD  # now n is 2 guards off on the bed: the bed vetoes it
    (row,) = select_defaults(table, [net, bed], ranges=[(4,)])
    assert row.choice == "b/s" and row.worst == pytest.approx(1.5)
    # a family without networks: the beds decide alone, at their own ratios
    (row,) = select_defaults({("bed", 4): table[("bed", 4)]}, [bed], ranges=[(4,)])
    assert row.choice == "b/s" and row.worst == pytest.approx(1.0)


def test_a_network_with_peers_is_scored_against_the_best_peer_with_the_figures_floor():
    one = Unit("one", "vp_eps", "vp", lambda: None, None, "teacher")
    two = Unit("two", "vp_eps", "vp", lambda: None, None, "teacher")
    table = {("one", 15): {"x/s": 0.004, "y/s": 0.006}, ("two", 15): {"x/s": 0.010, "y/s": 0.007}}
    # against the library's own best: x is 1.43× it on two, y 1.5× on one — x wins
    (row,) = select_defaults(table, [one, two], ranges=[(15,)], floor=1e-3)
    assert row.choice == "x/s" and row.worst == pytest.approx(0.010 / 0.007)
    # against the best peer (0.006 on one, 0.005 on two): x is 2× the peer on two, y at most 1.4× — y wins
    peers = {("one", 15): 0.006, ("two", 15): 0.005}
    (row,) = select_defaults(table, [one, two], ranges=[(15,)], peers=peers)
    assert row.choice == "y/s" and row.worst == pytest.approx(1.4) and row.network_worst == pytest.approx(1.4)
    # errors below the figures' floor (1e-3) count as it — not as the 8-bit floor of the beds (2/255 ≈ 0.0078),
    # under which every configuration here would tie
    table = {("one", 20): {"a/s": 0.0005, "c/s": 0.0020}}
    (row,) = select_defaults(table, [one], ranges=[(20,)], peers={("one", 20): 0.0004})
    assert row.choice == "a/s" and row.worst == pytest.approx(1.0) and row.runner_up_worst == pytest.approx(2.0)


def test_every_table_has_its_units_and_vp_splits_by_span():
    """The VP units on Stable Diffusion's table (σ_max 14.6) are evidence for the short-span table, those on the DDPM
    table (157) for the family's own; each table has networks and beds, and a row for every budget."""
    names: dict[str, list[str]] = {}
    for u in units():
        names.setdefault(u.table, []).append(u.name)
    assert {"ring2d@vp_sd", "digits_uncond_sd", "digits16_uncond_sd"} <= set(names["vp_eps+short"])
    assert {"ring2d@vp", "digits_uncond", "digits_cond"} <= set(names["vp_eps"])
    assert not {n for n in names["vp_eps"] if n.endswith("sd")}
    assert {"digits_flow", "digits16_flow"} <= set(names["flow"])  # two flow networks, at 8×8 and 16×16
    # EDM: networks seen as bare σ-space functions (a VP ε one, unguided conditional, a 16×16 flow one)
    assert {"digits_uncond_edmview", "digits_cond_edmview", "digits16_flow_edmview"} <= set(names["edm"])
    for u in units():
        family, short = u.family, u.table.endswith(SHORT_SPAN_SUFFIX)
        assert family in FAMILY_TABLES and (not short or family in SHORT_SPAN_TABLES)
        expected = (SHORT_SPAN_TABLES if short else FAMILY_TABLES)[family]
        # the table a model of that span gets is the one its unit is evidence for
        assert default_choice(10, family, sigma_max=u.span[1]) == next(c for limit, c in expected if limit >= 10)


def test_the_selection_gives_each_vp_span_its_own_rows():
    ddpm = Unit("ddpm", "vp_eps", "vp", lambda: None, None, "teacher")
    sd = Unit("sd", "vp_eps", "vp_sd", lambda: None, None, "teacher")
    table = {("ddpm", 4): {"a/s": 0.01, "b/s": 0.03}, ("sd", 4): {"a/s": 0.03, "b/s": 0.01}}
    rows = select_defaults(table, [ddpm, sd], ranges=[(4,)])
    assert [(r.family, r.choice, r.worst) for r in rows] == [("vp_eps", "a/s", 1.0), ("vp_eps+short", "b/s", 1.0)]


def test_tail_rows_agree_with_the_batch_and_median_errors_of_the_selection():
    from benchmarks.defaults_bench import config_errors, tail_rows

    unit = next(u for u in units(beds=("ring2d",), networks=False) if u.name == "ring2d@edm")
    configs = ["dpm_solver_3m/logsnr", "ipndm/kl_optimal"]
    rows = tail_rows(unit, 8, configs)
    rmse, median = config_errors(unit, 8), config_errors(unit, 8, metric="median")
    for r in rows:
        assert r.rmse == pytest.approx(rmse[r.config], rel=1e-9)
        assert r.median == pytest.approx(median[r.config], rel=1e-9)
        assert r.median <= r.p90 <= r.max and r.mean <= r.rmse  # RMS ≥ mean of non-negative errors


def test_the_selection_pools_its_own_noises_never_the_figures_or_calibration():
    from benchmarks.defaults_bench import SELECTION_SEEDS, config_errors, hand_table, pooled_rmse

    assert 0 not in SELECTION_SEEDS and 1 not in SELECTION_SEEDS and len(SELECTION_SEEDS) >= 2
    unit = next(u for u in units(beds=("ring2d",), networks=False) if u.name == "ring2d@edm")
    pooled = hand_table([unit], [4], seeds=(2, 3))[(unit.name, 4)]
    two, three = config_errors(unit, 4, seed=2), config_errors(unit, 4, seed=3)
    key = "dpm_solver_2m/logsnr"
    assert pooled[key] == pytest.approx(pooled_rmse([two[key], three[key]]))
    # the pooled batch RMSE is the RMSE over all 128 samples: walk both batches at once and compare
    sig = steps.get("logsnr")(4, *unit.span)
    both = torch.cat([walk_output(unit, sig, "dpm_solver_2m", seed) for seed in (2, 3)])
    ref = torch.cat([unit.reference(seed) for seed in (2, 3)])
    assert pooled[key] == pytest.approx(rmse(both, ref), rel=1e-12)
    assert hand_table([unit], [4], seeds=(2,))[(unit.name, 4)] == two != config_errors(unit, 4)
    with pytest.raises(ValueError, match="only the batch RMSE pools"):
        hand_table([unit], [4], metric="median", seeds=(2, 3))


def test_held_out_networks_are_in_the_figures_only_and_summarised_apart():
    from benchmarks.defaults_bench import HELD_OUT_NETWORKS, HELD_OUT_WRAPPED, FigureRow, format_summary

    held_names = set(HELD_OUT_NETWORKS) | set(HELD_OUT_WRAPPED)
    assert not {u.name for u in units()} & held_names  # the selection's units (and guided ones)
    assert not {u.name for u in units(guided=True)} & held_names
    held = [u for u in units(held_out=True) if u.held_out]
    assert [u.name for u in held] == [*HELD_OUT_NETWORKS, *HELD_OUT_WRAPPED]
    # one per VP span, and the wrapped ones': on EDM's span, and on Stable Diffusion's (the short-span rows)
    assert {u.table for u in held} == {"vp_eps", "vp_eps+short", "edm", "edm+short"}
    assert all(name.endswith(("_edmview", "_sdview")) for name in HELD_OUT_WRAPPED)
    with pytest.raises(ValueError, match="never see"):
        select_defaults({(held[-1].name, 4): {"a/s": 0.1}}, held[-1:], ranges=[(4,)])
    with pytest.raises(ValueError, match="never see"):
        select_defaults({(held[0].name, 4): {"a/s": 0.1}}, held[:1], ranges=[(4,)])

    def row(unit: str, generate: float, held_out: bool) -> FigureRow:
        return FigureRow(unit, "vp_eps", 4, generate, 1.0, "x/s", 1, 1.0, False, 1.0, 1.0, "p", 1.0, "h", held_out)

    text = format_summary([row("net", 0.5, False), row("other", 2.0, True)])
    lines = text.splitlines()
    assert lines[0].startswith("all units (1): cells 1; generate<=1.0x peer 1")
    held_line = next(ln for ln in lines if ln.startswith("held-out networks"))
    assert "(1): cells 1; generate<=1.0x peer 0" in held_line
    assert "NFE 4: generate<=1.0x 1/1" in text  # the per-budget lines count the selection's units only


def test_a_wrapped_network_is_the_same_sigma_space_function_of_the_edm_family():
    from benchmarks.defaults_bench import HELD_OUT_WRAPPED, SPANS, model_view
    from diffsample.model_family import model_family, noise_schedule_of

    wrapped = {u.name: u for u in units(held_out=True) if u.name in HELD_OUT_WRAPPED}
    unit = wrapped["digits_uncond_holdout_edmview"]
    view = model_view(unit)
    assert model_family(view) == "edm" and noise_schedule_of(view) is None
    assert unit.span == (0.002, 80.0)
    sd_view = wrapped["digits_cond_sd_holdout_sdview"]
    assert model_family(model_view(sd_view)) == "edm" and sd_view.span == SPANS["vp_sd"]
    assert sd_view.table == "edm+short"  # generate takes the short-span rows for it
    from diffsample.models import load_digits_model

    net = load_digits_model(False, variant="holdout")
    x, sigma = torch.randn(3, 1, 8, 8) * 2.0, torch.tensor([2.0, 0.5, 0.01])
    assert torch.equal(view(x, sigma), net(x, sigma))  # the same function, only its schedule hidden


def test_cells_without_a_tuned_plan_are_left_out_of_the_tuned_counts():
    import math

    from benchmarks.defaults_bench import FigureRow, format_summary

    def row(unit: str, tuned: float) -> FigureRow:
        return FigureRow(unit, "edm", 4, 0.5, 0.5, "x/s", 1, tuned, False, 1.0, 1.0, "p", 1.0, "h", False)

    text = format_summary([row("a", 0.4), row("b", math.nan)])
    first = text.splitlines()[0]
    assert "tuned<=target 1 of 1 tuned" in first and "cells 2" in first
    assert "tuned/hand 0.40" in text.splitlines()[1]  # the mean over the tuned cell only, not NaN or inf
    assert "tuned on target 1/1" in text
    untuned = format_summary([row("a", math.nan), row("b", math.nan)])  # a --no-tune run: no tuned cell at all
    assert "tuned<=target 0 of 0 tuned" in untuned.splitlines()[0] and "tuned/hand nan" in untuned


def test_an_exact_tie_at_zero_meets_every_target_and_a_lone_zero_reference_none():
    from benchmarks.defaults_bench import FigureRow, format_summary

    def row(unit: str, ours: float, peer: float) -> FigureRow:
        return FigureRow(unit, "edm", 8, ours, ours, "x/s", 1, ours, False, 1.0, peer, "p", peer, "h", False)

    tie, behind, ahead = row("tie", 0.0, 0.0), row("behind", 1e-9, 0.0), row("ahead", 0.0, 0.02)
    assert tie.ratio("generate") == 1.0 and behind.ratio("generate") == float("inf") and ahead.ratio("auto") == 0.0
    assert tie.meets("auto", 0.8) and tie.meets("tuned", 0.7, "best_hand")  # 0 <= 0.8 · 0, as the issue writes it
    assert not behind.meets("generate", 1.0) and not behind.meets("tuned", 0.7, "best_hand")
    assert ahead.meets("auto", 0.8)
    nan_row = row("untuned", 0.0, 0.0)
    nan_row.tuned = float("nan")
    assert not nan_row.meets("tuned", 0.7, "best_hand")
    first = format_summary([tie, behind, ahead]).splitlines()[0]
    assert "generate<=1.0x peer 2; auto<=0.8x peer 2; tuned<=target 2" in first


def test_figures_pool_their_held_out_batches_and_refuse_the_calibration_and_selection_seeds():
    from benchmarks.defaults_bench import (
        FIGURE_SEEDS,
        RESERVED_SEEDS,
        SELECTION_SEEDS,
        WIDE_FIGURE_SEEDS,
        config_errors,
        figure_rows,
        figure_seeds,
        peer_errors,
        pooled_rmse,
    )
    from diffsample import generate

    assert set(RESERVED_SEEDS) == {1, *SELECTION_SEEDS}  # calibration (1) and selection seeds
    assert not set(RESERVED_SEEDS) & {*FIGURE_SEEDS, *WIDE_FIGURE_SEEDS} and 0 in WIDE_FIGURE_SEEDS
    for bad in ([], [0, 0], [0, 1], [2]):
        with pytest.raises(ValueError, match="figure seeds"):
            figure_seeds(bad)
    unit = next(u for u in units(beds=("ring2d",), networks=False) if u.name == "ring2d@edm")
    lo, hi = unit.span
    (one,) = figure_rows([unit], [4], tune_plans=False)
    (pair,) = figure_rows([unit], [4], tune_plans=False, seeds=(0, 4))
    # one batch: the figure is that batch's RMSE, the best configurations picked on it
    gen = [
        rmse(generate(unit.denoiser, unit.noise(s) * hi, nfe=4, sigma_min=lo, sigma_max=hi), unit.reference(s))
        for s in (0, 4)
    ]
    assert one.generate == pytest.approx(gen[0], rel=1e-12)
    both = [{**config_errors(unit, 4, seed=s), **peer_errors(unit, 4, seed=s)} for s in (0, 4)]
    assert one.best_hand == min(both[0].values())
    # two batches: every error is the RMSE over all 128 samples, the best configuration the best pooled one
    assert pair.generate == pytest.approx(pooled_rmse(gen), rel=1e-12)
    pooled = {c: pooled_rmse([b[c] for b in both]) for c in both[0]}
    assert pair.best_hand == pytest.approx(min(pooled.values()), rel=1e-12)
    assert pair.best_hand_config == min(pooled, key=pooled.get)


def test_figures_tune_on_the_calibration_count_asked_and_by_default_on_the_cli_tunes():
    import inspect

    from benchmarks.defaults_bench import TUNE_SETTINGS, figure_rows
    from benchmarks.suites import defaults as defaults_suite
    from diffsample import sample, tune
    from diffsample.cli import TUNE_CALIBRATION, add_tuning_arguments

    # the figures measure the tuner as `diffsample tune` runs it: the same calibration count by default
    assert inspect.signature(figure_rows).parameters["tune_calibration"].default == TUNE_CALIBRATION

    def defaults_of(add_arguments) -> argparse.Namespace:
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        return parser.parse_args([])

    assert defaults_of(add_tuning_arguments).calibration == TUNE_CALIBRATION
    assert defaults_of(defaults_suite.add_arguments).tune_calibration == TUNE_CALIBRATION
    unit = next(u for u in units(beds=("ring2d",), networks=False) if u.name == "ring2d@edm")
    lo, hi = unit.span
    (row,) = figure_rows([unit], [4], tune_settings="reduced", tune_calibration=24)
    options = dict(TUNE_SETTINGS["reduced"])
    options["max_evals"], options["kick_evals"] = (
        options.pop("max_evals_per_call") * 4,
        options.pop("kick_evals_per_call") * 4,
    )
    calibration = (unit.noise(1, 24) * hi).to(torch.float64)  # seed 1's first 24 noises, nothing else
    plan = tune(unit.denoiser, nfe=4, calibration=calibration, sigma_min=lo, sigma_max=hi, **options)
    assert plan.provenance["calibration_size"] == 24
    expected = rmse(sample(unit.denoiser, (unit.noise(0) * hi).to(torch.float64), plan=plan), unit.reference(0))
    assert row.tuned == pytest.approx(expected, rel=1e-9)
