"""data_gen.maze: generated mazes, their labels (unique shortest paths), datasets and CLI."""

import subprocess
import sys
from collections import deque
from pathlib import Path

import numpy as np
import pytest

from data_gen import maze as M
from trm_jax.data import dataset, tokens

REPO = Path(__file__).resolve().parents[1]


def distances(q: str, start: int) -> list[int]:
    """Independent BFS over the non-wall cells of a 30x30 grid string."""
    dist = [-1] * 900
    dist[start] = 0
    todo = deque([start])
    while todo:
        i = todo.popleft()
        r, c = divmod(i, 30)
        for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            j = rr * 30 + cc
            if 0 <= rr < 30 and 0 <= cc < 30 and q[j] != "#" and dist[j] < 0:
                dist[j] = dist[i] + 1
                todo.append(j)
    return dist


def number_of_shortest_paths(q: str, start: int, goal: int) -> int:
    d = distances(q, start)
    ways = [0] * 900
    ways[start] = 1
    for i in sorted((i for i in range(900) if d[i] > 0), key=lambda i: d[i]):
        r, c = divmod(i, 30)
        for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if 0 <= rr < 30 and 0 <= cc < 30 and d[rr * 30 + cc] == d[i] - 1:
                ways[i] += ways[rr * 30 + cc]
    return ways[goal]


def check_label(q: str, a: str, min_path: int = 110) -> int:
    """Asserts that `a` marks the unique shortest S-G path of `q`; returns its length."""
    assert len(q) == len(a) == 900 and set(q) <= set("# SG") and set(a) <= set("# SGo")
    s, g = q.index("S"), q.index("G")
    assert q.count("S") == q.count("G") == 1
    ds, dg = distances(q, s), distances(q, g)
    length = ds[g]
    assert length > min_path
    assert number_of_shortest_paths(q, s, g) == 1
    on_shortest = {i for i in range(900) if ds[i] >= 0 and ds[i] + dg[i] == length}
    marked = {i for i in range(900) if a[i] == "o"}
    assert marked == on_shortest - {s, g}
    assert len(marked) == length - 1
    assert all(a[i] == q[i] for i in range(900) if i not in marked)
    return length


def test_generated_labels_are_unique_shortest_paths():
    recs, _ = M.generate_many(3, 25, M.MazeSpec(), quiet=True)
    lengths = [check_label(q, a) for q, a, _ in recs]
    assert lengths == [n for _, _, n in recs]
    assert len({q for q, _, _ in recs}) == 25
    # The extra loops matter: some mazes have cycles (more open cells than a spanning tree).
    assert any(sum(ch != "#" for ch in q) > 2 * 14 * 14 - 1 for q, _, _ in recs)


def test_min_path_option():
    recs, _ = M.generate_many(4, 5, M.MazeSpec(min_path=160), quiet=True)
    assert all(check_label(q, a, 160) > 160 for q, a, _ in recs)


def test_shortest_path_counting_with_a_tie():
    rows = ["#" * 30] + ["#" + " " * 28 + "#"] * 3 + ["#" * 30] * 26
    q = list("".join(rows))
    q[31], q[33 + 60] = "S", "G"  # opposite corners of a 3x3 open square: many shortest paths
    q = "".join(q)
    answer, length, count = M.solve_maze(q)
    assert (length, count) == (4, 2) and answer is not None
    assert number_of_shortest_paths(q, 31, 93) == 6


def test_tokens_match_token_map():
    q, a, _ = M.generate_one(0, 0, M.MazeSpec())
    np.testing.assert_array_equal(
        M.tokens_array([q, a]), [tokens.maze_to_tokens(q), tokens.maze_to_tokens(a)]
    )


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()
    }


def test_build_layout_determinism_and_workers(tmp_path, capsys):
    base = ["build", "--num-train", "6", "--num-test", "4", "--seed", "9", "--quiet"]
    assert M.main(base + ["--out", str(tmp_path / "a"), "--workers", "1"]) == 0
    assert "train 6 mazes, test 4" in capsys.readouterr().out
    assert M.main(base + ["--out", str(tmp_path / "b"), "--workers", "2"]) == 0
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert M.main(base + ["--out", str(tmp_path / "c"), "--workers", "1", "--aug"]) == 0
    train, test = (
        dataset.load_split(tmp_path / "a", "train"),
        dataset.load_split(tmp_path / "a", "test"),
    )
    assert dataset.load_identifiers(tmp_path / "a") == ["<blank>"]
    assert train.metadata["augmentation"] is None and test.metadata["augmentation"] is None
    assert dataset.load_split(tmp_path / "c", "train").metadata["augmentation"] == {
        "kind": "dihedral"
    }
    assert dataset.load_split(tmp_path / "c", "test").metadata["augmentation"] is None
    seen = set()
    for split, n in ((train, 6), (test, 4)):
        m = split.metadata
        assert (m["vocab_size"], m["seq_len"], m["num_puzzle_identifiers"], m["task"]) == (
            6,
            900,
            1,
            "maze",
        )
        assert m["seed"] == 9 and m["min_path"] == 110 and m["path_length"]["min"] > 110
        assert (
            split.inputs.shape == split.labels.shape == (n, 900) and split.inputs.dtype == np.uint8
        )
        np.testing.assert_array_equal(split.puzzle_identifiers, np.zeros(n))
        np.testing.assert_array_equal(split.group_indices, np.arange(n + 1))
        for x, y in zip(np.asarray(split.inputs), np.asarray(split.labels)):
            q, a = tokens.tokens_to_maze(x), tokens.tokens_to_maze(y)
            check_label(q, a)
            seen.add(q)
    assert len(seen) == 10  # no duplicates; train and test disjoint
    assert (
        M.main(base[:-2] + ["10", "--quiet", "--out", str(tmp_path / "d"), "--workers", "1"]) == 0
    )
    assert (
        _files(tmp_path / "d")["train/all__inputs.npy"]
        != _files(tmp_path / "a")["train/all__inputs.npy"]
    )


def _write_csv(path, rows, header="source,question,answer,rating"):
    path.write_text(header + "\n" + "".join(f'{s},"{q}","{a}",{r}\n' for s, q, a, r in rows))


@pytest.fixture(scope="module")
def rows():
    recs, _ = M.generate_many(1, 5, M.MazeSpec(), quiet=True)
    return [("gen", q, a, 0) for q, a, _ in recs]


def test_from_csv(tmp_path, rows, capsys):
    _write_csv(tmp_path / "train.csv", rows)
    _write_csv(tmp_path / "test.csv", rows[:2])
    out = tmp_path / "ds"
    args = [
        "from-csv",
        "--csv",
        str(tmp_path / "train.csv"),
        "--test-csv",
        str(tmp_path / "test.csv"),
    ]
    assert M.main(args + ["--out", str(out), "--subsample-size", "3", "--seed", "2", "--aug"]) == 0
    train = dataset.load_split(out, "train")
    assert train.metadata["augmentation"] == {"kind": "dihedral"}
    pairs = {q: a for _, q, a, _ in rows}
    got = [
        (tokens.tokens_to_maze(x), tokens.tokens_to_maze(y))
        for x, y in zip(train.inputs, train.labels)
    ]
    assert len(got) == 3 and all(pairs[q] == a for q, a in got)
    assert dataset.load_split(out, "test").inputs.shape == (2, 900)


def test_from_csv_bad_input(tmp_path, rows, capsys):
    out = tmp_path / "ds"
    _write_csv(tmp_path / "other.csv", rows, header="question,answer")
    assert M.main(["from-csv", "--csv", str(tmp_path / "other.csv"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other.csv" in err[0] and "source,question,answer,rating" in err[0]
    bad = list(rows)
    s, q, a, r = bad[2]
    bad[2] = (s, q, a.replace("o", " ", 1).replace("#", "o", 1), r)  # 'o' on a wall
    _write_csv(tmp_path / "bad.csv", bad)
    assert M.main(["from-csv", "--csv", str(tmp_path / "bad.csv"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.csv line 4" in err[0] and "except for 'o'" in err[0]
    bad[2] = (s, q[:899] + "x", a, r)
    _write_csv(tmp_path / "bad.csv", bad)
    assert M.main(["from-csv", "--csv", str(tmp_path / "bad.csv"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.csv line 4" in err[0] and "900 characters" in err[0]
    assert not out.exists()


def test_solve_command(tmp_path, rows, capsys):
    q, a = rows[0][1], rows[0][2]
    unreachable = q.replace("G", " ")
    unreachable = unreachable[:899] + "G"  # bottom-right corner, walled in
    tie = "".join(["#" * 30] + ["#" + " " * 28 + "#"] * 3 + ["#" * 30] * 26)
    tie = tie[:31] + "S" + tie[32:93] + "G" + tie[94:]
    f = tmp_path / "m.txt"
    f.write_text("\n".join([q, "", unreachable, tie, q[:100], q]) + "\n")
    assert M.main(["solve", str(f)]) == 2
    cap = capsys.readouterr()
    out = cap.out.splitlines()
    assert len(out) == 2 and out[0] == out[1] == f"{a}\t{a.count('o') + 1}"
    err = cap.err.strip().splitlines()
    assert err == [
        f"{f} line 3: G cannot be reached from S.",
        f"{f} line 4: there is more than one shortest path.",
        f"{f} line 5: expected 900 characters (a 30x30 maze), got 100.",
    ]


def test_cli_errors_exit_2_with_one_line():
    for args in (
        ["build", "--out", "/tmp/never_maze", "--min-path", "0"],
        ["build", "--out", "/tmp/never_maze", "--nope"],
        ["from-csv", "--csv", "/nonexistent.csv", "--out", "/tmp/never_maze"],
    ):
        r = subprocess.run(
            [sys.executable, "-m", "data_gen.maze", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 2, args
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not Path("/tmp/never_maze").exists()
