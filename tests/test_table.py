"""`clica table` on a real local Ray: outputs, resume, failures, row selection."""

import csv
import json

import pytest

from clica.cli import main
from clica.errors import ClicaError
from clica.experiments import table

TINY = {"n": 3, "batch_size": 64, "num_eval_batches": 1, "n_log_steps": 1000, "hidden_scale": 0.2}


def tiny(name, **settings):
    base = next(r for r in table.MLP_ROWS if r.name == name)
    return table.Row(name, "mlp", {**base.settings, **TINY, **settings}, base.prediction)


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    out = tmp_path_factory.mktemp("table")
    rows = [tiny("box-laplace-l1"), tiny("real-normal-l2"),
            table.Row("broken", "mlp", {**TINY, "act_fct": "relu"}, "permutation")]  # raises in its task
    records = table.run_table(rows, [0, 1], out, steps=3, progress=False, max_retries=0)
    return out, rows, records


def test_a_tiny_table_writes_every_output(done):
    out, rows, records = done
    assert {f.name for f in out.iterdir()} >= {"table.md", "table.csv", "runs.jsonl", "table.png", "summary.json"}
    with open(out / "table.csv") as fh:
        lines = list(csv.DictReader(fh))
    assert [(l["row"], l["seed"]) for l in lines] == [(r.name, str(s)) for r in rows for s in (0, 1)]
    assert {"row", "seed", "r2", "mcc", "seconds", "status"} <= set(lines[0])
    ok = [l for l in lines if l["status"] == "ok"]
    assert len(ok) == 4 and all(0 <= float(l["mcc"]) <= 1 for l in ok)
    md = (out / "table.md").read_text()
    assert "box-laplace-l1" in md and "clica mlp --preset fast" in md and "CPU cores" in md
    # each run's full config and host travel back to the driver
    rec = json.loads((out / "runs.jsonl").read_text().splitlines()[0])
    assert rec["config"]["n"] == 3 and rec["host"]
    # thread pools sized to the task's one CPU, not inherited from the driver (an idle numba pool
    # thread of the driver's size spun and made table runs five times slower)
    assert rec["threads"] == {"torch": 1, "numba_pool": 1}


def test_a_row_that_raises_is_reported_failed_with_its_error(done):
    out, _, records = done
    failed = [r for r in records if r["row"] == "broken"]
    assert [r["status"] for r in failed] == ["failed", "failed"]
    assert "relu" in failed[0]["error"] and "\n" not in failed[0]["error"]
    assert "Failed runs" in (out / "table.md").read_text()
    others = [r for r in records if r["row"] != "broken"]
    assert all(r["status"] == "ok" for r in others)


def test_a_rerun_keeps_finished_runs(done, monkeypatch):
    out, rows, records = done
    before = (out / "runs.jsonl").read_text().splitlines()
    good = rows[:2]  # all finished: nothing to run, so Ray is never started
    monkeypatch.setattr(table, "run_one", lambda *a: pytest.fail("a finished run ran again"))
    again = table.run_table(good, [0, 1], out, steps=3, progress=False)
    assert [(r["row"], r["seed"], r["mcc"]) for r in again] == [
        (r["row"], r["seed"], r["mcc"]) for r in records if r["row"] != "broken"]
    assert (out / "runs.jsonl").read_text().splitlines() == before


def test_rows_selection_and_bad_values_are_one_line(capsys, tmp_path):
    assert [r.name for r in table.select_rows("mlp", "box-normal-l2,sphere-vmf10")] == ["box-normal-l2", "sphere-vmf10"]
    assert len(table.select_rows("mlp", vary="n")) == 4 and len(table.select_rows("mlp", vary="layers")) == 5
    assert [r.name for r in table.select_rows("kitti")][0] == "kitti-l1-box"
    with pytest.raises(ClicaError, match="unknown row"):
        table.select_rows("mlp", "box-laplace-l1,nope")
    for argv, needle in ((["--rows", "nope"], "unknown row"), (["--seeds", "0"], "--seeds"),
                         (["--steps", "0"], "--steps"), (["--cpus-per-run", "0"], "--cpus-per-run")):
        assert main(["table", "mlp", "--output-dir", str(tmp_path), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err
    with pytest.raises(SystemExit) as exc:   # --vary is the mlp table's flag only
        main(["table", "kitti", "--vary", "n"])
    assert exc.value.code == 2 and "unrecognized arguments: --vary" in capsys.readouterr().err


def test_list_prints_each_row_with_its_command(capsys):
    assert main(["table", "mlp", "--list"]) == 0
    out = capsys.readouterr().out
    for row in table.MLP_ROWS:
        assert row.name in out
    assert "clica mlp --preset fast" in out and "--c-p 1 --c-param 0.05 --p 1 --box-norm" in out


def test_a_result_counts_only_for_the_settings_it_was_made_with(done):
    """A changed recipe or --steps runs a finished (row, seed) again instead of reusing its old scores."""
    out, rows, _ = done
    runs = out / "runs.jsonl"
    same = {(r.name, s): r.config(3) for r in rows[:2] for s in (0, 1)}
    assert table._read_runs(runs, same) == (table._read_runs(runs, same)[0], 0)
    assert len(table._read_runs(runs, same)[0]) == 4
    longer = {(r.name, s): r.config(4) for r in rows[:2] for s in (0, 1)}
    assert table._read_runs(runs, longer) == ({}, 4)
    recipe = {**same, ("box-laplace-l1", 0): {**same["box-laplace-l1", 0], "tau": 0.05}}
    kept, stale = table._read_runs(runs, recipe)
    assert ("box-laplace-l1", 0) not in kept and len(kept) == 3 and stale == 1


def test_ctrl_c_writes_the_table_of_the_finished_runs(done, tmp_path, monkeypatch):
    """Interrupted, the table shows what finished (the rest as not run) and the same command resumes."""
    import shutil

    import ray

    out, rows, _ = done
    shutil.copy(out / "runs.jsonl", tmp_path / "runs.jsonl")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ray, "wait", interrupted)
    with pytest.raises(KeyboardInterrupt):
        table.run_table(rows[:2], [0, 1, 2], tmp_path, steps=3, progress=False)
    with open(tmp_path / "table.csv") as fh:
        status = [(l["seed"], l["status"]) for l in csv.DictReader(fh)]
    assert status == [("0", "ok"), ("1", "ok"), ("2", "not run")] * 2
    assert "1 not run (interrupted)" in (tmp_path / "table.md").read_text()
    assert table._read_runs(tmp_path / "runs.jsonl", {(r.name, 2): r.config(3) for r in rows[:2]}) == ({}, 0)


def test_varied_rows_keep_the_base_rows_recipe():
    """--vary changes n or the depth only: the box/Laplace/L1 row's τ 0.05 stays (at the fast recipe's τ 0.2
    the box output reached MCC 0.90 instead of 0.997)."""
    base = next(r for r in table.MLP_ROWS if r.name == "box-laplace-l1")
    for vary, key, values in (("n", "n", [5, 10, 20, 40]), ("layers", "n_mixing_layer", [1, 2, 3, 4, 5])):
        rows = table.select_rows("mlp", vary=vary)
        assert [r.config()[key] for r in rows] == values
        for r in rows:
            assert {k: v for k, v in r.config().items() if k != key} == {
                k: v for k, v in base.config().items() if k != key}


def test_the_kitti_table_runs_on_synthetic_data_made_in_its_task(tmp_path):
    """`clica table kitti` with no --data-dir: each task makes the synthetic KITTI file where it runs."""
    rows = table.select_rows("kitti", "kitti-l1-box")
    (rec,) = table.run_table(rows, [0], tmp_path, steps=3, progress=False)
    assert rec["status"] == "ok" and 0 <= rec["mcc"] <= 1 and rec["config"]["max_iter"] == 3
    assert "kitti-l1-box" in (tmp_path / "table.md").read_text()


@pytest.mark.parametrize("threshold, expected", [(0.0, "first"), (1.01, None)])
def test_a_run_records_the_training_time_at_which_mcc_first_reached_the_threshold(monkeypatch, threshold, expected):
    monkeypatch.setattr(table, "MCC_REACHED", threshold)
    rec = table.run_one(tiny("box-laplace-l1", n_log_steps=2), seed=0, steps=4, threads=1)
    if expected is None:
        assert rec["seconds_to_mcc"] is None  # never got there
    else:
        assert 0 < rec["seconds_to_mcc"] < rec["seconds"]  # the first logged step's training time


def test_the_table_gives_the_median_time_to_mcc_over_the_seeds_that_got_there(tmp_path):
    rows = [tiny("box-laplace-l1"), tiny("box-normal-l2"), tiny("real-normal-l2")]
    base = {"r2": 0.9, "mcc": 0.99, "seconds": 50.0, "status": "ok", "error": "", "host": "h"}
    records = [{**base, "row": "box-laplace-l1", "seed": s, "seconds_to_mcc": t}
               for s, t in enumerate((10.0, 30.0, None))]
    records += [{**base, "row": "box-normal-l2", "seed": 0, "seconds_to_mcc": None},
                {**base, "row": "real-normal-l2", "seed": 0}]  # recorded by no run (an older version)
    table.write_outputs(rows, records, tmp_path, steps=None, total_s=1.0)
    md = (tmp_path / "table.md").read_text()
    assert "| 20 (2 of 3) |" in md.split("box-laplace-l1 |")[1].splitlines()[0]
    assert "| never |" in md.split("box-normal-l2 |")[1].splitlines()[0]
    assert "| — |" in md.split("real-normal-l2 |")[1].splitlines()[0]
    with open(tmp_path / "table.csv") as fh:
        assert [l["seconds_to_mcc_0.99"] for l in csv.DictReader(fh)] == ["10.0", "30.0", "never", "never", ""]


def test_the_table_speaks_the_readmes_words_and_gives_no_spread_for_one_seed(tmp_path, capsys):
    rows = [tiny("box-laplace-l1"), tiny("box-normal-l2"), tiny("box-normal-l1")]
    base = {"r2": 0.995, "mcc": 0.5, "seconds": 5.0, "status": "ok", "error": "", "host": "h"}
    records = [{**base, "row": r.name, "seed": 0} for r in rows] + [{**base, "row": "box-normal-l2", "seed": 1}]
    table.write_outputs(rows, records, tmp_path, steps=None, total_s=1.0)
    md = (tmp_path / "table.md").read_text()
    assert "| row | theory | linear R² | MCC |" in md and "| target |" in md and "vs prediction" not in md
    one_seed = md.split("box-laplace-l1 |")[1].splitlines()[0]
    assert " permutation | 0.9950 | 0.5000 |" in one_seed and "±" not in one_seed and "MCC ≥ 0.99 ✗" in one_seed
    two_seeds = md.split("box-normal-l2 |")[1].splitlines()[0]
    assert " orthogonal | 0.9950 ± 0.0000 |" in two_seeds and "R² ≥ 0.99 ✓" in two_seeds
    assert "| — |" in md.split("box-normal-l1 |")[1].splitlines()[0] and "| report |" in md
    assert main(["table", "mlp", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "affine" not in listed and "aim as" not in listed and "identified up to an orthogonal map" in listed


@pytest.mark.parametrize("experiment, own_flag", [("mlp", "--vary"), ("kitti", "--data-dir")])
def test_a_tables_help_is_its_own(experiment, own_flag, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["table", experiment, "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and out.startswith(f"usage: clica table {experiment}") and own_flag in out


def test_datasets_make_one_cell_per_row_and_dataset_each_run_on_its_dataset(tmp_path, monkeypatch):
    """`--datasets`: every row on every dataset, the dataset and --data-dir handed to `clica kitti`'s config
    (`run_kitti` stands in here: the benchmark loaders live in `clica kitti`)."""
    from clica.data.generators import dsprites, shapes3d
    from clica.experiments import kitti

    rows = table.dataset_rows(table.select_rows("kitti", "kitti-l1-box,kitti-slowvae"),
                              table.parse_datasets("dsprites, shapes3d,dsprites"))
    assert [r.name for r in rows] == ["kitti-l1-box@dsprites", "kitti-l1-box@shapes3d",
                                      "kitti-slowvae@dsprites", "kitti-slowvae@shapes3d"]
    assert rows[1].cell == ("kitti-l1-box", "shapes3d") and "--dataset shapes3d" in rows[1].command_line()
    for name in (dsprites.FILE_NAME, shapes3d.FILE_NAME):
        (tmp_path / name).touch()
    # each dataset found as `clica kitti` finds it, handed to its runs as an absolute path
    assert table.data_dirs(rows, str(tmp_path)) == {"dsprites": str((tmp_path / dsprites.FILE_NAME).resolve()),
                                                    "shapes3d": str((tmp_path / shapes3d.FILE_NAME).resolve())}
    seen = []
    monkeypatch.setattr(kitti, "run_kitti", lambda cfg: seen.append(cfg) or {"mcc": 0.25 + 0.5 * len(seen)})
    records = [table.run_one(r, 0, steps=3, threads=1, data_dir=str(tmp_path)) for r in rows]
    assert [(c.dataset, c.data_dir, c.max_iter, c.model) for c in seen] == [
        ("dsprites", str(tmp_path), 3, "contrastive"), ("shapes3d", str(tmp_path), 3, "contrastive"),
        ("dsprites", str(tmp_path), 3, "slowvae"), ("shapes3d", str(tmp_path), 3, "slowvae")]
    table.write_outputs(rows, records, tmp_path, steps=3, total_s=1.0)
    md = (tmp_path / "table.md").read_text()
    assert "| method | dsprites | shapes3d |" in md
    assert "| kitti-l1-box | 0.7500 | 1.2500 |" in md and "| kitti-slowvae | 1.7500 | 2.2500 |" in md


@pytest.mark.parametrize("argv, needle", [
    # the loaders' own messages: the file expected, where it is published, the command that makes it offline
    (["--datasets", "dsprites"], "dSprites file not found: data/dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
                                 " (nor dsprites.npz); download"),
    (["--datasets", "dsprites"], "or make one offline with `clica data dsprites --output DIR`"),
    (["--datasets", "shapes3d", "--data-dir", "{tmp}"], "3D Shapes file not found: {tmp}/3dshapes.h5; download "
                                                        "3dshapes.h5 from https://storage.googleapis.com/3d-shapes"),
    (["--datasets", "shapes3d", "--data-dir", "{tmp}"], "make one offline with `clica data shapes3d --output DIR`"),
    (["--datasets", "kittimasks,dsprites", "--data-dir", "{tmp}"],
     "make synthetic data offline with `clica data kitti-masks --output {tmp}/kitti_peds_v2.pickle`"),
    (["--datasets", "natural", "--data-dir", "{tmp}"],
     "Natural Sprites file not found: {tmp}/downscale_keepaspect.csv"),
    (["--datasets", "dsprites,mnist"], "unknown dataset(s) mnist; choose from kittimasks, dsprites"),
    (["--datasets", "kittimasks,dsprites", "--data-dir", "{tmp}/a.file"], "is a file, but --datasets names 2"),
])
def test_a_dataset_without_its_file_is_one_line_before_anything_runs(argv, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CLICA_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # without --data-dir: the original's folders, here absent
    (tmp_path / "a.file").write_text("")
    out = tmp_path / "table"
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["table", "kitti", "--seeds", "1", "--steps", "1", "--output-dir", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle.replace("{tmp}", str(tmp_path)) in err and not out.exists()


def test_the_dataset_table_runs_on_ray_with_what_clica_kitti_reads_today(tmp_path, capsys):
    """kittimasks through `--datasets`: a real Ray run of one cell, its MCC in the method × dataset table."""
    assert main(["table", "kitti", "--rows", "kitti-l1-box", "--datasets", "kittimasks", "--seeds", "1",
                 "--steps", "3", "--output-dir", str(tmp_path)]) == 0
    (rec,) = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert rec["row"] == "kitti-l1-box@kittimasks" and rec["status"] == "ok"
    assert rec["config"]["dataset"] == "kittimasks"
    md = (tmp_path / "table.md").read_text()
    assert "| method | kittimasks |" in md and f"| kitti-l1-box | {rec['mcc']:.4f} |" in md
