"""`clica score CODES FACTORS`: every file type round trips, every bad input is one line and exit 2."""

import json

import numpy as np
import pytest

from clica.cli import main

FAST = "mcc,r2,mig,modularity"


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    factors = rng.integers(0, 4, size=(400, 3)).astype(float)
    codes = np.c_[factors[:, ::-1] + 0.05 * rng.normal(size=factors.shape), rng.normal(size=400)]
    return codes, factors


def _score(capsys, *argv):
    code = main(["score", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def _write(path, array):
    suffix = path.suffix
    if suffix == ".npy":
        np.save(path, array)
    elif suffix == ".npz":
        np.savez(path, values=array)
    else:
        header = ",".join(f"dim{i}" for i in range(array.shape[1]))
        np.savetxt(path, array, delimiter=",", header=header, comments="", fmt="%.17g")
    return path


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".csv"])
def test_every_file_type_gives_the_python_scores(tmp_path, capsys, arrays, suffix):
    from clica.metrics import score

    codes, factors = arrays
    code, out, err = _score(capsys, _write(tmp_path / f"c{suffix}", codes), _write(tmp_path / f"f{suffix}", factors),
                            "--metrics", FAST, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert list(result) == ["mcc", "r2", "mig", "modularity", "explicitness_train", "explicitness_test",
                            "n_train", "n_test"]
    assert result == pytest.approx(score(codes, factors, FAST.split(",")), abs=1e-12)
    assert result["n_train"] == 320 and result["n_test"] == 80 and result["mcc"] > 0.99


def test_all_default_metrics_json_keys_and_the_table(tmp_path, capsys, arrays):
    codes, factors = arrays
    c, f = _write(tmp_path / "c.npy", codes[:200]), _write(tmp_path / "f.npy", factors[:200, :2])
    code, out, err = _score(capsys, c, f, "--json", "--train-fraction", "0.75", "--num-bins", "10", "--seed", "1")
    assert code == 0, err
    assert set(json.loads(out)) == {"mcc", "r2", "mig", "dci_disentanglement", "dci_completeness",
                                    "dci_informativeness_train", "dci_informativeness_test", "sap", "modularity",
                                    "explicitness_train", "explicitness_test", "n_train", "n_test"}
    code, out, err = _score(capsys, c, f, "--metrics", "mig,sap")
    assert code == 0 and "160 train, 40 test" in out and "MIG" in out and "SAP" in out and "MCC" not in out


def test_help_states_the_splits(capsys):
    with pytest.raises(SystemExit):
        main(["score", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "MCC uses all rows" in text and "linear R² fits its affine map" in text and "--fast-dci" in text


def _bad_files(tmp_path, codes, factors):
    """name -> (CODES, FACTORS, extra flags, expected message)."""
    good_c, good_f = _write(tmp_path / "c.npy", codes), _write(tmp_path / "f.npy", factors)
    nan = codes.copy()
    nan[3, 1] = np.nan
    two = tmp_path / "two.npz"
    np.savez(two, a=codes, b=codes)
    obj = tmp_path / "obj.npy"
    np.save(obj, np.array([{"a": 1}] * 3, dtype=object), allow_pickle=True)
    (tmp_path / "junk.npy").write_bytes(b"not an array")
    (tmp_path / "text.csv").write_text("a,b\n1,x\n2,y\n")
    (tmp_path / "text.txt").write_text("1,2\n")
    return {
        "nan": (_write(tmp_path / "nan.npy", nan), good_f, [], "holds NaN or infinite values"),
        "count": (_write(tmp_path / "short.npy", codes[:300]), good_f, [], "has 300 samples but FACTORS"),
        "transposed": (good_c, _write(tmp_path / "ft.npy", factors.T), [], "looks transposed"),
        "3-D": (_write(tmp_path / "3d.npy", codes.reshape(400, 2, 2)), good_f, [], "must be samples × dimensions"),
        "two arrays": (two, good_f, [], "holds 2 arrays (a, b); it needs exactly one"),
        "pickled": (obj, good_f, [], "cannot be read"),
        "unreadable": (tmp_path / "junk.npy", good_f, [], "cannot be read"),
        "missing": (tmp_path / "none.npy", good_f, [], "no such file"),
        "text csv": (tmp_path / "text.csv", good_f, [], "cannot be read"),
        "suffix": (good_c, tmp_path / "text.txt", [], "use a .npy, .npz or .csv file"),
        "metric": (good_c, good_f, ["--metrics", "mig,beta_vae"], "choose from mcc, r2, mig, dci, sap, modularity"),
        "fraction": (good_c, good_f, ["--train-fraction", "1.2"], "train_fraction must be between 0 and 1"),
        "bins": (good_c, good_f, ["--num-bins", "1"], "--num-bins must be at least 2"),
        "few codes": (_write(tmp_path / "c2.npy", codes[:, :2]), good_f, [], "at least as many codes as factors (3)"),
        "constant": (good_c, _write(tmp_path / "const.npy", np.c_[factors[:, :2], np.ones(400)]),
                     ["--metrics", "mig"], "take a single value"),
    }


@pytest.mark.parametrize("case", ["nan", "count", "transposed", "3-D", "two arrays", "pickled", "unreadable",
                                  "missing", "text csv", "suffix", "metric", "fraction", "bins", "few codes",
                                  "constant"])
def test_bad_inputs_are_one_line_and_exit_2(tmp_path, capsys, arrays, case):
    codes_file, factors_file, flags, message = _bad_files(tmp_path, *arrays)[case]
    code, out, err = _score(capsys, codes_file, factors_file, *flags)
    assert code == 2 and out == ""
    assert err.startswith("clica score: error: ") and err.count("\n") == 1, err
    assert message in err
