"""clica.distributed on real gloo process groups: 2 ranks started with torch.multiprocessing.spawn.

Each worker sets torchrun's environment variables, so ``init_world`` is what joins
the group; the workers pickle their results into a folder and the tests compare
them with one process computing the same thing on the whole batch.
"""

import os
import pickle
import socket
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from clica import distributed as D
from clica.errors import ClicaError
from clica.losses import BlockLoss, DotInfoNCE, LpInfoNCE

B, N = 16, 4  # global batch, inputs (and outputs) of the encoder
RANKS = 2
TIMEOUT_S = 5
LOSSES = {
    "lp1_simclr": lambda: LpInfoNCE(p=1, simclr_compatibility_mode=True),
    "lp2_self_weight": lambda: LpInfoNCE(p=2, tau=0.2, self_weight=0.01),
    "dot_normalized": lambda: DotInfoNCE(normalize=True),
    "block": lambda: BlockLoss([(DotInfoNCE(normalize=True), 0, 2), (LpInfoNCE(p=1), 2, 4)]),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join(rank: int, port: int, **env) -> D.World:
    """What torchrun gives a worker, then init_world."""
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(RANKS), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), **env)
    return D.init_world(torch.device("cpu"))


def _meet(folder, rank: int, name: str) -> None:
    """A file barrier before init, so the short-timeout rendezvous does not wait on one rank's imports."""
    (folder / f"{name}{rank}").touch()
    while not all((folder / f"{name}{r}").exists() for r in range(RANKS)):
        time.sleep(0.01)


def _encoder() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(N, 16), torch.nn.Tanh(), torch.nn.Linear(16, N))


def _pairs():
    g = torch.Generator().manual_seed(1)
    x1 = torch.randn(B, N, generator=g)
    return x1, x1 + 0.3 * torch.randn(B, N, generator=g)


def _rank_function(y: torch.Tensor, rank: int) -> torch.Tensor:
    """A different scalar on every rank, depending on every row of the gathered ``y``."""
    w = torch.linspace(-1.0, 1.0, y.numel()).reshape(y.shape)
    return (torch.sin(y) * w * (rank + 1)).sum() + (rank + 2) * torch.logsumexp(y @ y.T, 1).mean()


def _gather_input() -> torch.Tensor:
    return torch.randn(B, 3, generator=torch.Generator().manual_seed(2))


def _rows(rank: int) -> slice:
    return slice(rank * B // RANKS, (rank + 1) * B // RANKS)


def _threads() -> set[str]:
    return set(os.listdir("/proc/self/task"))


def _worker(rank: int, port: int, folder) -> None:
    before = _threads()
    world = _join(rank, port)
    group_threads = _threads() - before  # the process group's gloo threads
    out = {"world": world, "again": D.init_world(torch.device("cpu")), "current": D.current_world()}
    x1, x2 = _pairs()
    rows = _rows(rank)
    for name, make in LOSSES.items():
        model = D.wrap(_encoder(), world, torch.device("cpu"))
        loss = D.global_loss(make(), model(x1[rows]), model(x2[rows]))
        loss.total.backward()
        out[name] = (loss.total.item(), {k: p.grad.clone() for k, p in D.unwrap(model).named_parameters()},
                     type(model).__name__)
    del model, loss  # a live DDP model keeps its process group, and so its threads, alive
    x = _gather_input()[rows].clone().requires_grad_()
    y = D.gather(x)
    _rank_function(y, rank).backward()
    out["gathered"], out["gather_grad"] = y.detach(), x.grad
    try:
        D.gather(torch.zeros(4 + rank, 3))
    except ClicaError as e:
        out["shape_error"] = str(e)
    out["mean"] = D.all_mean(float(rank) + 1.0, world)
    out["from0"] = D.broadcast({"rank": rank, "list": [rank] * 3}, world)
    out["from1"] = D.broadcast(f"rank {rank}", world, src=1)
    out["seed"] = D.rank_seed(7, world)
    out["any"] = D.any_rank(rank == 1, world), D.any_rank(False, world)
    D.barrier(world)
    D.shutdown()
    out["after"] = (D.current_world(), dist.is_initialized())
    out["group_threads"] = len(group_threads), len(group_threads & _threads())
    (folder / f"rank{rank}.pkl").write_bytes(pickle.dumps(out))


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """The results of both ranks of one 2-process run of :func:`_worker`."""
    folder = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, (_free_port(), folder), nprocs=RANKS)
    return [pickle.loads((folder / f"rank{r}.pkl").read_bytes()) for r in range(RANKS)]


def test_init_world_from_torchrun_environment(ranks):
    for r, out in enumerate(ranks):
        assert out["world"] == D.World(rank=r, size=2, local_rank=r)
        assert out["again"] == out["world"] and out["current"] == out["world"]  # idempotent
        assert out["world"].is_main == (r == 0) and out["world"].distributed
        assert out["after"] == (D.World(), False)  # shutdown leaves the group


@pytest.mark.parametrize("name", LOSSES)
def test_global_loss_equals_one_process_on_the_whole_batch(ranks, name):
    x1, x2 = _pairs()
    model = _encoder()
    loss = LOSSES[name]()(model(x1), model(x2))
    loss.total.backward()
    for out in ranks:
        value, grads, wrapper = out[name]
        assert wrapper == "DistributedDataParallel"
        assert value == pytest.approx(loss.total.item(), abs=1e-5)
        for k, p in model.named_parameters():
            torch.testing.assert_close(grads[k], p.grad, atol=1e-5, rtol=1e-5, msg=f"{name}: gradient of {k}")


def test_gather_concatenates_and_sums_the_ranks_gradients(ranks):
    x = _gather_input().requires_grad_()
    sum(_rank_function(x, r) for r in range(RANKS)).backward()
    for r, out in enumerate(ranks):
        torch.testing.assert_close(out["gathered"], x.detach())
        torch.testing.assert_close(out["gather_grad"], x.grad[_rows(r)], atol=1e-5, rtol=1e-5)


def test_gather_rejects_different_shapes(ranks):
    for out in ranks:
        assert out["shape_error"] == "every process must pass the same shape to gather, got (4, 3), (5, 3) on ranks 0…1"


def test_collectives(ranks):
    for out in ranks:
        assert out["mean"] == 1.5
        assert out["from0"] == {"rank": 0, "list": [0, 0, 0]}
        assert out["from1"] == "rank 1"
        assert out["any"] == (True, False)
    seeds = [out["seed"] for out in ranks]
    assert seeds[0] != seeds[1] and all(0 <= s < 2**31 for s in seeds)
    assert seeds == [D.rank_seed(7, D.World(rank=r, size=2, local_rank=r)) for r in range(RANKS)]  # deterministic


def test_shutdown_ends_the_groups_threads_after_ddp(ranks):
    """A gloo thread alive at interpreter exit can abort the process; DDP's import of torch._dynamo
    used to keep the group alive past destroy_process_group."""
    for out in ranks:
        started, left = out["group_threads"]
        assert started > 0 and left == 0


def test_single_process_is_unchanged(monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    world = D.init_world(torch.device("cpu"))
    try:
        assert world == D.World() and D.current_world() == world and not world.distributed and world.is_main
        assert not dist.is_initialized()
        model = torch.nn.Linear(2, 2)
        assert D.wrap(model, world, "cpu") is model and D.unwrap(model) is model
        x = torch.randn(3, 2)
        assert D.gather(x) is x
        assert D.all_mean(2.5, world) == 2.5 and D.broadcast("x", world) == "x" and D.any_rank(True, world)
        D.barrier(world)
        assert D.rank_seed(123, world) == 123
    finally:
        D.shutdown()


def test_local_batch_and_device():
    assert D.local_batch(12, D.World(rank=1, size=4)) == 3
    assert D.local_batch(10, D.World()) == 10
    with pytest.raises(ClicaError, match=r"^--batch-size 10 must be divisible by the 4 processes of this torchrun "
                                         r"run$"):
        D.local_batch(10, D.World(size=4))
    with pytest.raises(ClicaError, match=r"^--n-negatives 3 must be divisible by the 2 processes"):
        D.local_batch(3, D.World(size=2), flag="--n-negatives")
    assert D.local_device(torch.device("cpu"), D.World(rank=1, size=2, local_rank=1)) == torch.device("cpu")


def test_bad_environment(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(ClicaError, match="RANK is not set"):
        D.init_world(torch.device("cpu"))
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ClicaError, match="WORLD_SIZE='two' is not an integer"):
        D.init_world(torch.device("cpu"))
    assert D.current_world() == D.World() and not dist.is_initialized()


def _failing_peer(rank: int, port: int, folder, mode: str) -> None:
    _meet(folder, rank, "ready")
    world = _join(rank, port, CLICA_DIST_TIMEOUT_S=str(TIMEOUT_S))
    if rank == 1:
        if mode == "stuck":  # alive, but never joins the collective
            while not (folder / "done").exists():
                time.sleep(0.05)
        os._exit(0)  # no clean-up, as a crash
    time.sleep(0.2)
    start = time.monotonic()
    try:
        D.gather(torch.ones(2, 2))
        result = None
    except Exception as e:  # noqa: BLE001 - the error is the result
        result = (type(e), str(e), time.monotonic() - start)
    (folder / "done").touch()
    D.shutdown()
    (folder / "rank0.pkl").write_bytes(pickle.dumps((world, result)))


@pytest.mark.parametrize("mode", ["dead", "stuck"])
def test_a_failing_rank_makes_collectives_raise(tmp_path, mode):
    """Gloo reports a peer that exited at once (connection closed) and one that hangs after the timeout."""
    mp.spawn(_failing_peer, (_free_port(), tmp_path, mode), nprocs=RANKS)
    world, result = pickle.loads((tmp_path / "rank0.pkl").read_bytes())
    assert world.distributed and result is not None
    kind, message, elapsed = result
    assert issubclass(kind, RuntimeError)
    if mode == "dead":
        assert "closed by peer" in message and elapsed < TIMEOUT_S
    else:
        assert "Timed out" in message and TIMEOUT_S - 0.5 < elapsed < TIMEOUT_S + 5
