"""Token regions: different / unstable / stable / inheritable on hand-made code grids."""
import torch

from flashvideo.regions import DIFFERENT, INHERITABLE, STABLE, inherit_plan, region_counts, token_regions


def grids(changes, h=6, w=6):
    a = torch.zeros(h, w, dtype=torch.long)
    b = a.clone()
    for i, j in changes:
        b[i, j] = 7
    return a, b


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_single_change_in_the_middle():
    a, b = grids([(2, 3)])
    r = token_regions(a, b, 0.0, gen())
    assert r[2, 3] == DIFFERENT
    assert region_counts(r) == {"different": 1, "unstable": 8, "stable": 36 - 9, "inheritable": 0}
    assert (r[1:4, 2:5] != STABLE).all()


def test_single_change_at_corner_and_edge():
    r = token_regions(*grids([(0, 0)]), 0.0, gen())
    assert region_counts(r)["unstable"] == 3
    r = token_regions(*grids([(0, 3)]), 0.0, gen())
    assert region_counts(r)["unstable"] == 5


def test_radius_two():
    r = token_regions(*grids([(3, 3)], 8, 8), 0.0, gen(), radius=2)
    assert region_counts(r)["unstable"] == 24


def test_ratio_extremes_and_rounding():
    a, b = grids([(2, 3)])
    assert region_counts(token_regions(a, b, 0.0, gen()))["inheritable"] == 0
    r1 = token_regions(a, b, 1.0, gen())
    assert region_counts(r1) == {"different": 1, "unstable": 8, "stable": 0, "inheritable": 27}
    assert region_counts(token_regions(a, b, 0.5, gen()))["inheritable"] == 14  # round(13.5) -> 14
    assert region_counts(token_regions(a, b, 0.2, gen()))["inheritable"] == 5   # round(5.4) -> 5


def test_subset_is_reproducible_from_seed_and_uniform():
    a, b = grids([(0, 0)])
    r1, r2 = token_regions(a, b, 0.3, gen(5)), token_regions(a, b, 0.3, gen(5))
    assert torch.equal(r1, r2)
    others = [token_regions(a, b, 0.3, gen(s)) for s in range(20)]
    assert any(not torch.equal(r1, o) for o in others)
    hits = sum((o == INHERITABLE).float() for o in others)  # every stable token gets picked sometimes
    stable_mask = token_regions(a, b, 1.0, gen()) == INHERITABLE
    assert (hits[stable_mask] > 0).all() and (hits[~stable_mask] == 0).all()


def test_inherit_plan_copies_a():
    a, b = grids([(2, 2)])
    a[4, 4] = 3
    b[4, 4] = 3
    r = token_regions(a, b, 1.0, gen())
    plan = inherit_plan(a, r)
    assert plan[4, 4] == 3 and plan[2, 2] == -1 and plan[1, 1] == -1
    assert ((plan >= 0) == (r == INHERITABLE)).all()
