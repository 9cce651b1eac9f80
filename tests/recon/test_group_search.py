import torch

from adpdm.nn.partition import StepPartition
from adpdm.recon.group_search import GroupSearch


def _search(part: StepPartition) -> GroupSearch:
    return GroupSearch([part], index=0, total_units=1, iters=1, tau_start=1.0, tau_end=0.1, entropy_weight=0.1,
                       error_scale=1.0)  # fmt: skip


def _move_step(part: StepPartition, step: int, group: int) -> None:
    with torch.no_grad():
        part.alpha[step, group] = part.alpha[step].max() + 1.0
    part.harden()


def test_a_table_change_that_raises_the_whole_models_error_is_reverted():
    part = StepPartition(num_steps=4, groups=2)
    before = [part.snapshot()]
    old_table, old_alpha = part.table.clone(), part.alpha.detach().clone()
    _move_step(part, 0, 1)  # step 0 moves from group 0 to group 1
    calls = []

    def error(steps: torch.Tensor) -> float:  # the model is worse with step 0 in group 1
        calls.append((part.table.clone(), steps.tolist()))
        return float(part.table[0])

    assert _search(part).keep_if_better(before, error) == "reverted"
    assert torch.equal(part.table, old_table) and torch.equal(part.alpha.detach(), old_alpha)
    # measured with the new table, then with the old one, on the rows of the moved step alone
    assert [(int(t[0]), steps) for t, steps in calls] == [(1, [0]), (0, [0])]


def test_a_table_change_that_lowers_the_whole_models_error_is_kept():
    part = StepPartition(num_steps=4, groups=2)
    before = [part.snapshot()]
    _move_step(part, 0, 1)
    new_table, new_alpha = part.table.clone(), part.alpha.detach().clone()
    assert _search(part).keep_if_better(before, lambda steps: 1.0 - float(part.table[0])) == "kept"
    assert torch.equal(part.table, new_table) and torch.equal(part.alpha.detach(), new_alpha)


def test_an_unchanged_table_is_not_measured():
    part = StepPartition(num_steps=4, groups=2)
    before = [part.snapshot()]
    part.harden()

    def error(steps: torch.Tensor) -> float:
        raise AssertionError("measured an unchanged table")

    assert _search(part).keep_if_better(before, error) == "unchanged"
