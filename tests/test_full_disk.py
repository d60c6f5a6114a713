"""A full disk loses nothing: whole log lines or none, no temporary files, one line of error, and
the run resumes from its last good checkpoint once space is back."""

import errno
import json
import os

import pytest

import clica.runs as runs
from clica.cli import main
from clica.errors import ClicaError
from clica.runs import RunDir

TINY = ["--n", "3", "--batch-size", "128", "--n-log-steps", "1", "--num-eval-batches", "2", "--seed", "5",
        "--only-unsupervised", "--c-p", "1", "--p", "1", "--checkpoint-every", "2"]


class DiskFills:
    """os.write that writes only part of what it is given once ``budget`` bytes are used, then fails
    with ENOSPC, as a filling disk does; ``free()`` gives the space back."""

    def __init__(self, budget: int):
        self.budget, self.real = budget, os.write

    def __call__(self, fd, data):
        if self.budget <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = self.real(fd, bytes(data[:self.budget]))
        self.budget -= n
        return n

    def free(self):
        self.budget = 1 << 60


def test_append_line_never_leaves_a_torn_line(tmp_path, monkeypatch):
    log = tmp_path / "metrics.jsonl"
    runs.append_line(log, json.dumps({"step": 1}))
    disk = DiskFills(budget=5)  # room for part of the next line only
    monkeypatch.setattr(runs.atomic.os, "write", disk)
    with pytest.raises(ClicaError, match=f"no space left on device while writing {log}"):
        runs.append_line(log, json.dumps({"step": 2, "loss": 0.5}))
    assert log.read_text() == '{"step": 1}\n'


def test_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    runs.atomic_write_json(target, {"a": 1})
    real_fdopen = os.fdopen

    class FullFile:
        def __init__(self, fd, mode):
            self.fh = real_fdopen(fd, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            self.fh.write(data[:10])
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runs.atomic.os, "fdopen", FullFile)
    with pytest.raises(ClicaError, match=f"no space left on device while writing {target}"):
        runs.atomic_write_json(target, {"a": 2, "b": "x" * 10000})
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_torn_last_line_is_dropped_with_a_note_on_read(tmp_path, capsys):
    run = RunDir(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo')
    assert [r["step"] for r in run.read_metrics()] == [1, 2]
    assert "dropped the incomplete last line" in capsys.readouterr().out
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(ClicaError, match="line 2 is not a JSON record"):
        run.read_metrics()


def test_mlp_on_a_full_disk_stops_with_one_line_and_resumes_to_the_same_numbers(tmp_path, monkeypatch, capsys):
    argv = ["mlp", *TINY, "--n-steps", "8"]
    assert main([*argv, "--save-dir", str(tmp_path / "a")]) == 0
    capsys.readouterr()

    run = tmp_path / "b"
    disk = DiskFills(budget=1 << 60)
    monkeypatch.setattr(runs.atomic.os, "write", disk)
    real_log = RunDir.log_metrics

    def log_then_fill(self, record):
        if record["step"] == 5:  # the disk fills while the 5th line is written
            disk.budget = 20
        real_log(self, record)

    monkeypatch.setattr(RunDir, "log_metrics", log_then_fill)
    assert main([*argv, "--save-dir", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no space left on device while writing" in err
    assert (run / "metrics.jsonl").read_text().endswith("\n")  # whole lines only
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]

    disk.free()
    monkeypatch.setattr(RunDir, "log_metrics", real_log)
    assert main([*argv, "--save-dir", str(run), "--resume-training"]) == 0
    a, b = (json.loads((tmp_path / x / "summary.json").read_text()) for x in "ab")
    assert a["phases"] == b["phases"]
    strip = lambda rs: [{k: v for k, v in r.items() if k != "time_s"} for r in rs]  # noqa: E731
    assert strip(RunDir(tmp_path / "a").read_metrics()) == strip(RunDir(run).read_metrics())


def test_a_locked_run_folder_refuses_a_second_process(tmp_path, capsys):
    import subprocess
    import sys
    import textwrap

    from clica.runs import FolderLock

    run = tmp_path / "r"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from clica.runs import FolderLock
        lock = FolderLock({str(run)!r}); assert lock.acquire()
        print("locked", flush=True); time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["mlp", *TINY, "--n-steps", "2", "--save-dir", str(run)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"in use by another clica process (pid {holder.pid})" in err
        assert not (run / "config.json").exists()
    finally:
        holder.kill()
        holder.wait()
    # the kernel drops a dead holder's lock: nothing stale is left behind
    with FolderLock(run):
        pass
    assert main(["mlp", *TINY, "--n-steps", "2", "--save-dir", str(run)]) == 0
