"""The calibration budget: when the search stops so that its end still fits (search.Budget)."""
from models.calibrate.search import Budget


def test_end_priced_at_the_search_running_cost_not_the_start():
    b = Budget(60.0, t0=0.0, nparams=4, nseeds=2)
    b.cost(0.1)                      # the start: no failures, cheap
    cheap = b.left_s(10.0)
    for _ in range(20):
        b.cost(0.5)                  # the failure regime: five times dearer
    assert b.mean_cost > 0.4
    assert b.left_s(10.0) < cheap - 30   # the end now needs far more of the budget
    # 4 params, 2 seeds: 27 stall refit + 4 check + 32 profile + 4 + 8 estimate
    assert b.tail == 75


def test_budget_counts_from_its_own_start():
    # a compile of 90 s before the search moves t0; the search still gets its budget
    b = Budget(60.0, t0=90.0, nparams=4, nseeds=2)
    b.cost(0.2)
    assert b.left_s(91.0) > 30
    assert b.max_evals(91.0) > 150
    assert not b.out_of_time(91.0, b.min_evals)


def test_least_search_runs_however_small_the_budget():
    b = Budget(1.0, t0=0.0, nparams=4, nseeds=2)
    b.cost(0.3)
    assert b.left_s(0.5) < 0
    assert b.max_evals(0.5) == b.min_evals
    assert not b.out_of_time(5.0, b.min_evals - 1)   # the grid and the stall search finish
    assert b.out_of_time(5.0, b.min_evals)


def test_fixed_evaluations_never_stop_on_time():
    b = Budget(1.0, t0=0.0, nparams=4, nseeds=2, evals=400)
    b.cost(10.0)
    assert b.max_evals(1e6) == 400
    assert not b.out_of_time(1e6, 399)


def test_cli_default_seeds_are_the_models():
    import inspect

    from analyzer import model_cli
    from models.calibrate.search import DEFAULT_SEEDS, calibrate
    assert inspect.signature(calibrate).parameters["seeds"].default == DEFAULT_SEEDS
    assert inspect.signature(model_cli.calibrate).parameters["seeds"].default == len(DEFAULT_SEEDS)


def test_the_end_is_priced_by_runs_at_once():
    # one seed per evaluation on two cores: the six-seed refit takes three runs' time, not six
    serial = Budget(60.0, 0.0, nparams=4, nseeds=1)
    paired = Budget(60.0, 0.0, nparams=4, nseeds=1, workers=2)
    assert serial.tail - paired.tail == 9 * 3 + 4 + 8


def test_without_the_grid_the_least_search_is_the_stall_search():
    assert Budget(60.0, 0.0, 4, 2, grid=False).min_evals == 13
    assert Budget(60.0, 0.0, 4, 2).min_evals == 29
