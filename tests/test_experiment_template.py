"""The shared parts of the experiment template: the epoch sampler, the solver and the resume keys."""

import dataclasses

import pytest
import torch

from clica.data.sequences import EpochSampler
from clica.errors import ClicaError
from clica.training import Solver


def test_epoch_sampler_draws_each_index_once_per_epoch_and_resumes_exactly():
    sampler = EpochSampler(10, 3, torch.Generator().manual_seed(0))
    epoch = torch.cat([sampler.next() for _ in range(3)])  # the 10th index waits for the next epoch
    assert len(torch.unique(epoch)) == 9
    state = {k: v.clone() if torch.is_tensor(v) else v for k, v in sampler.state_dict().items()}
    gen_state = sampler.generator.get_state()
    expected = [sampler.next() for _ in range(4)]
    again = EpochSampler(10, 3, torch.Generator().manual_seed(1))
    again.load_state_dict(state)
    again.generator.set_state(gen_state)
    assert all(torch.equal(a, b) for a, b in zip(expected, (again.next() for _ in range(4))))
    with pytest.raises(ValueError, match="not one of the 10 pair starts"):
        again.load_state_dict({"perm": torch.arange(9), "pos": 0})


def test_solver_steps_as_the_optimiser_and_its_schedule():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(3, 1), torch.nn.Linear(3, 1)
    b.load_state_dict(a.state_dict())
    solver = Solver(torch.optim.Adam(a.parameters(), lr=0.1), cosine_steps=4)
    opt = torch.optim.Adam(b.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)
    x = torch.randn(8, 3)
    for _ in range(3):
        solver.step(a(x).square().mean())
        opt.zero_grad()
        b(x).square().mean().backward()
        opt.step()
        sched.step()
    assert torch.equal(a.weight, b.weight) and solver.scheduler.get_last_lr() == sched.get_last_lr()
    with pytest.raises(ClicaError, match="learning-rate schedule does not fit"):
        solver.restore("ckpt.pt", opt.state_dict(), None)


def test_every_mlp_setting_but_length_seed_device_and_preset_defines_the_run():
    from clica.experiments.mlp import RUN_DEFINING, MLPConfig

    names = [f.name for f in dataclasses.fields(MLPConfig)]
    assert [n for n in names if n not in RUN_DEFINING] == ["n_steps", "seed", "device", "extra"]
    assert set(RUN_DEFINING) <= set(names)
