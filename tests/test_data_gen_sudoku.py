"""data_gen.sudoku: exact solver, rating, unique-puzzle generator, dataset builder and CLI."""

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data_gen import sudoku as S
from trm_jax.data import dataset, tokens

REPO = Path(__file__).resolve().parents[1]

# Published hard puzzles. Names and strings as published:
# - Arto Inkala's "world's hardest sudoku" (The Telegraph, June 2012);
# - "AI Escargot" (Arto Inkala, 2006);
# - "Easter Monster" (champagne, 2007), "Golden Nugget" (tarek, 2007) and "Platinum Blonde"
#   (coloin, 2006): forum.enjoysudoku.com, "The hardest sudokus" thread; SE ratings 10.6-11.9;
# - 17-clue puzzles: the brute-force-resistant puzzle of Wikipedia's "Sudoku solving
#   algorithms" article; the hard 17-clue puzzle of Peter Norvig's essay "Solving Every Sudoku
#   Puzzle" (norvig.com/sudoku.html); the first puzzle of Gordon Royle's list of 17-clue sudokus.
# The solutions are NOT typed in: each is checked against the rules and the givens below.
_HARD = """
inkala_2012 8..........36......7..9.2...5...7.......457.....1...3...1....68..85...1..9....4..
ai_escargot 1....7.9..3..2...8..96..5....53..9...1..8...26....4...3......1..4......7..7...3..
easter_monster 1.......2.9.4...5...6...7...5.9.3.......7.......85..4.7.....6...3...9.8...2.....1
golden_nugget .......39.....1..5..3.5.8....8.9...6.7...2...1..4.......9.8..5..2....6..4..7.....
platinum_blonde .......12........3..23..4....18....5.6..7.8.......9.....85.....9...4.5..47...6...
wikipedia_17 000000000000003085001020000000507000004000100090000000500000073002010000000040009
norvig_17 4.....8.5.3..........7......2.....6.....8.4......1.......6.3.7.5..2.....1.4......
royle_17_first 000000010400000000020000000000050407008000300001090000300400200050100000000806000
"""
HARD = dict(line.split() for line in _HARD.strip().splitlines())
SEVENTEEN = ("wikipedia_17", "norvig_17", "royle_17_first")


def obeys_rules(sol) -> bool:
    g = np.asarray(sol).reshape(9, 9)
    digits = list(range(1, 10))
    rows = all(sorted(r) == digits for r in g)
    cols = all(sorted(c) == digits for c in g.T)
    boxes = all(
        sorted(g[r : r + 3, c : c + 3].ravel()) == digits for r in (0, 3, 6) for c in (0, 3, 6)
    )
    return rows and cols and boxes


def keeps_givens(puzzle, sol) -> bool:
    return all(p == 0 or p == s for p, s in zip(puzzle, sol))


def brute_force_count(grid, limit=3) -> int:
    """Plain backtracking over blanks in index order; no propagation, no shared code."""
    g = list(grid)
    blanks = [i for i in range(81) if g[i] == 0]

    def ok(i, d):
        r, c = divmod(i, 9)
        br, bc = r - r % 3, c - c % 3
        for k in range(9):
            if g[r * 9 + k] == d or g[k * 9 + c] == d:
                return False
            if g[(br + k // 3) * 9 + bc + k % 3] == d:
                return False
        return True

    def givens_consistent():
        for i in range(81):
            if g[i]:
                d, g[i] = g[i], 0
                fine = ok(i, d)
                g[i] = d
                if not fine:
                    return False
        return True

    if not givens_consistent():
        return 0
    count = 0

    def rec(k):
        nonlocal count
        if k == len(blanks):
            count += 1
            return
        i = blanks[k]
        for d in range(1, 10):
            if ok(i, d):
                g[i] = d
                rec(k + 1)
                g[i] = 0
                if count >= limit:
                    return

    rec(0)
    return count


def singles_only_solves(grid) -> bool:
    """Independent naked + hidden singles solver (sets of candidates): True if it fills the grid."""
    units = (
        [[r * 9 + c for c in range(9)] for r in range(9)]
        + [[r * 9 + c for r in range(9)] for c in range(9)]
        + [
            [(br + r) * 9 + bc + c for r in range(3) for c in range(3)]
            for br in (0, 3, 6)
            for bc in (0, 3, 6)
        ]
    )
    peers = [set().union(*[u for u in units if i in u]) - {i} for i in range(81)]
    cand = [{d} if d else set(range(1, 10)) for d in grid]
    changed = True
    while changed:
        changed = False
        for i in range(81):
            if len(cand[i]) == 1:
                (d,) = cand[i]
                for p in peers[i]:
                    if d in cand[p]:
                        cand[p].discard(d)
                        changed = True
        for u in units:
            for d in range(1, 10):
                places = [i for i in u if d in cand[i]]
                if len(places) == 1 and len(cand[places[0]]) > 1:
                    cand[places[0]] = {d}
                    changed = True
    return all(len(c) == 1 for c in cand)


# ---------------------------------------------------------------------------------------------
# Solver


@pytest.mark.parametrize("name", sorted(HARD))
def test_solves_published_hard_puzzles(name):
    puzzle = S.parse_puzzle(HARD[name])
    result = S.solve(puzzle)
    assert result.num_solutions == 1
    assert obeys_rules(result.solution)
    assert keeps_givens(puzzle, result.solution)
    if name in SEVENTEEN:
        assert sum(1 for d in puzzle if d) == 17
    if name not in ("royle_17_first", "wikipedia_17"):  # these two fall to singles alone
        assert result.rating >= 1
        assert not singles_only_solves(puzzle)


def test_hardest_puzzles_need_many_guesses():
    ratings = {
        k: S.solve(S.parse_puzzle(HARD[k])).rating for k in ("inkala_2012", "easter_monster")
    }
    assert all(r >= 50 for r in ratings.values()), ratings


def test_rating_does_not_depend_on_digit_order():
    """For a unique puzzle the whole search tree is explored, so relabelling the digits (which
    changes the order in which they are tried, not the cells branched on) keeps the rating."""
    rng = random.Random(4)
    for name in ("inkala_2012", "ai_escargot", "norvig_17"):
        puzzle = S.parse_puzzle(HARD[name])
        perm = [0] + rng.sample(range(1, 10), 9)
        relabelled = [perm[d] for d in puzzle]
        a, b = S.solve(puzzle), S.solve(relabelled)
        assert a.rating == b.rating
        assert b.solution == [perm[d] for d in a.solution]


def _near_complete_cases(n=60, seed=7):
    rng = random.Random(seed)
    cases = []
    for _ in range(n):
        sol = S.random_solution(rng)
        g = list(sol)
        for i in rng.sample(range(81), rng.randint(3, 45)):
            g[i] = 0
        cases.append(g)
        # A wrong digit in a blank cell, if possible one that breaks no rule directly.
        blanks = [i for i in range(81) if g[i] == 0]
        i = rng.choice(blanks)
        r, c = divmod(i, 9)
        seen = {g[r * 9 + k] for k in range(9)} | {g[k * 9 + c] for k in range(9)}
        seen |= {g[(r - r % 3 + k // 3) * 9 + c - c % 3 + k % 3] for k in range(9)}
        wrong = [d for d in range(1, 10) if d != sol[i] and d not in seen]
        bad = list(g)
        bad[i] = rng.choice(wrong or [d for d in range(1, 10) if d != sol[i]])
        cases.append(bad)
    return cases


def test_agrees_with_brute_force_counter():
    counts = {0: 0, 1: 0, 2: 0, 3: 0}
    for g in _near_complete_cases():
        expect = brute_force_count(g, limit=3)
        got = S.solve(g, limit=3)
        assert got.num_solutions == expect
        assert S.count_solutions(g) == min(expect, 2)
        if expect:
            assert obeys_rules(got.solution) and keeps_givens(g, got.solution)
        else:
            assert got.solution is None
        counts[expect] += 1
    # The sample covers no-solution, unique and multi-solution grids.
    assert counts[0] and counts[1] and counts[3], counts


def test_deadly_rectangle_has_two_solutions():
    sol = S.random_solution(random.Random(3))
    # Find a 2x2 rectangle in two boxes of one band whose corners swap: an unavoidable set.
    for r1 in range(9):
        for r2 in range(r1 + 1, (r1 // 3 + 1) * 3):
            for c1 in range(9):
                for c2 in range(c1 + 1, 9):
                    a, b = sol[r1 * 9 + c1], sol[r1 * 9 + c2]
                    if c1 // 3 != c2 // 3 and sol[r2 * 9 + c1] == b and sol[r2 * 9 + c2] == a:
                        g = list(sol)
                        for i in (r1 * 9 + c1, r1 * 9 + c2, r2 * 9 + c1, r2 * 9 + c2):
                            g[i] = 0
                        assert S.count_solutions(g) == 2 == brute_force_count(g)
                        return
    pytest.skip("no deadly rectangle in this grid")


def test_contradictory_givens_and_empty_grid():
    g = [0] * 81
    g[0] = g[5] = 7  # same digit twice in row 0
    assert S.solve(g).num_solutions == 0
    assert S.count_solutions([0] * 81) == 2


def test_parse_puzzle():
    s = HARD["norvig_17"]
    assert S.parse_puzzle(s.replace(".", "0")) == S.parse_puzzle(s)
    spaced = "\t".join(s[i : i + 9] for i in range(0, 81, 9)) + "  \n"
    assert S.parse_puzzle(spaced) == S.parse_puzzle(s)
    with pytest.raises(S.InputError, match="81 cells"):
        S.parse_puzzle(s[:-1])
    with pytest.raises(S.InputError, match="'x'"):
        S.parse_puzzle("x" + s[1:])


# ---------------------------------------------------------------------------------------------
# Generator


def test_removal_matches_greedy_reference():
    """Clue removal keeps a clue exactly when a plain solution count says removal breaks
    uniqueness, and ends at a minimal puzzle."""
    for k in range(3):
        rng = random.Random(k)
        sol = S.random_solution(rng)
        state = rng.getstate()
        puzzle = S.make_unique_puzzle(sol, rng)
        rng.setstate(state)
        order = list(range(81))
        rng.shuffle(order)
        ref = list(sol)
        for cell in order:
            d, ref[cell] = ref[cell], 0
            if S.count_solutions(ref) != 1:
                ref[cell] = d
        assert puzzle == ref
        for cell in range(81):  # minimal: no given can go
            if puzzle[cell]:
                g = list(puzzle)
                g[cell] = 0
                assert S.count_solutions(g) == 2


def test_generated_puzzles_unique_and_rated():
    spec = S.GenSpec(min_rating=1)
    recs, _ = S.generate_many(11, 12, spec, quiet=True)
    for puzzle, solution, rating, givens, _ in recs:
        g = S.parse_puzzle(puzzle)
        assert S.count_solutions(g) == 1
        r = S.solve(g)
        assert S.grid_to_str(r.solution) == solution and obeys_rules(r.solution)
        assert r.rating == rating >= 1
        assert not singles_only_solves(g)  # "hard": singles alone do not solve it
        assert 17 <= givens == sum(1 for d in g if d) <= 30


def test_max_rating_zero_gives_singles_puzzles():
    recs, _ = S.generate_many(5, 6, S.GenSpec(max_rating=0), quiet=True)
    for puzzle, *_ in recs:
        assert singles_only_solves(S.parse_puzzle(puzzle))


def test_givens_filter():
    recs, _ = S.generate_many(2, 5, S.GenSpec(min_givens=45, max_givens=45), quiet=True)
    assert [r[3] for r in recs] == [45] * 5
    assert all(S.count_solutions(S.parse_puzzle(r[0])) == 1 for r in recs)
    recs, _ = S.generate_many(2, 4, S.GenSpec(min_givens=30, max_givens=34), quiet=True)
    assert all(30 <= r[3] <= 34 for r in recs)


def test_generation_depends_only_on_seed_and_index():
    a = S.generate_one(5, 3, S.GenSpec())
    assert a == S.generate_one(5, 3, S.GenSpec())
    assert a != S.generate_one(5, 4, S.GenSpec())
    assert a != S.generate_one(6, 3, S.GenSpec())


def test_impossible_filter_fails_cleanly():
    with pytest.raises(S.InputError, match="loosen the filters"):
        S.generate_many(0, 1, S.GenSpec(min_givens=60, max_givens=60, min_rating=1, max_attempts=3))


# ---------------------------------------------------------------------------------------------
# Shuffle and tokens


def test_digits_match_token_map():
    s = HARD["golden_nugget"]
    np.testing.assert_array_equal(S.digits_array([s])[0] + 1, tokens.sudoku_to_tokens(s))


def test_shuffle_matches_definition_and_keeps_validity():
    rng = random.Random(1)
    sols = [S.random_solution(rng) for _ in range(4)]
    puzzles = [S.make_unique_puzzle(s, rng, min_givens=30) for s in sols]
    p = np.repeat(np.array(puzzles, dtype=np.int8), 16, axis=0)
    s = np.repeat(np.array(sols, dtype=np.int8), 16, axis=0)
    state = np.random.default_rng(9)
    ap, as_ = S.shuffle_digits(p, s, state)
    # Replay the same draws to check the definition cell by cell.
    state = np.random.default_rng(9)
    m = p.shape[0]
    digit_map = np.zeros((m, 10), dtype=int)
    digit_map[:, 1:] = np.argsort(state.random((m, 9)), axis=1) + 1
    transpose = state.random(m) < 0.5
    perms = []
    for _ in range(2):
        bands = np.argsort(state.random((m, 3)), axis=1)
        inner = np.argsort(state.random((m, 3, 3)), axis=2)
        perms.append(
            [[bands[k, i // 3] * 3 + inner[k, i // 3, i % 3] for i in range(9)] for k in range(m)]
        )
    for k in range(m):
        g = p[k].reshape(9, 9)
        g = g.T if transpose[k] else g
        for r in range(9):
            for c in range(9):
                want = digit_map[k, g[perms[0][k][r], perms[1][k][c]]]
                assert ap[k, r * 9 + c] == want
    assert 0 < transpose.sum() < m
    for k in range(m):
        assert obeys_rules(as_[k]) and keeps_givens(ap[k], as_[k])
        assert (ap[k] == 0).sum() == (p[k] == 0).sum()
        assert S.count_solutions(list(ap[k])) == 1


# ---------------------------------------------------------------------------------------------
# Datasets and command line


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()
    }


def _decode(split):
    q = [tokens.tokens_to_sudoku(row) for row in np.asarray(split.inputs)]
    a = [tokens.tokens_to_sudoku(row) for row in np.asarray(split.labels)]
    return q, a


def test_build_dataset_layout(tmp_path, capsys):
    out = tmp_path / "ds"
    args = ["build", "--out", str(out), "--num-train", "8", "--num-test", "4", "--seed", "3"]
    assert S.main(args + ["--workers", "1", "--quiet", "--min-rating", "1"]) == 0
    summary = capsys.readouterr().out
    assert "train 8 originals, test 4" in summary and "puzzles/s" in summary
    train, test = dataset.load_split(out, "train"), dataset.load_split(out, "test")
    assert dataset.load_identifiers(out) == ["<blank>"]
    assert train.metadata["augmentation"] == {"kind": "sudoku"}
    assert test.metadata["augmentation"] is None
    for split, n in ((train, 8), (test, 4)):
        m = split.metadata
        assert (m["vocab_size"], m["seq_len"], m["num_puzzle_identifiers"]) == (11, 81, 1)
        assert (m["pad_id"], m["ignore_label_id"], m["task"]) == (0, 0, "sudoku")
        assert m["seed"] == 3 and m["filters"]["min_rating"] == 1
        assert split.inputs.dtype == np.uint8 and split.inputs.shape == (n, 81)
        np.testing.assert_array_equal(split.puzzle_identifiers, np.zeros(n))
        np.testing.assert_array_equal(split.puzzle_indices, np.arange(n + 1))
        np.testing.assert_array_equal(split.group_indices, np.arange(n + 1))
        assert int(np.asarray(split.labels).min()) >= 2  # labels are fully solved
    (q_tr, a_tr), (q_te, a_te) = _decode(train), _decode(test)
    assert len(set(q_tr + q_te)) == 12  # no duplicates, train and test disjoint
    for q, a in zip(q_tr + q_te, a_tr + a_te):
        r = S.solve(S.parse_puzzle(q))
        assert r.num_solutions == 1 and S.grid_to_str(r.solution) == a and r.rating >= 1


def test_build_is_deterministic_across_runs_and_workers(tmp_path, capsys):
    base = ["build", "--num-train", "6", "--num-test", "4", "--seed", "21", "--quiet"]
    assert S.main(base + ["--out", str(tmp_path / "a"), "--workers", "1"]) == 0
    assert S.main(base + ["--out", str(tmp_path / "b"), "--workers", "1"]) == 0
    assert S.main(base + ["--out", str(tmp_path / "c"), "--workers", "2"]) == 0
    a = _files(tmp_path / "a")
    assert a == _files(tmp_path / "b") == _files(tmp_path / "c")
    assert (
        S.main(base[:-2] + ["22", "--quiet", "--out", str(tmp_path / "d"), "--workers", "1"]) == 0
    )
    d = _files(tmp_path / "d")
    assert d["train/all__inputs.npy"] != a["train/all__inputs.npy"]


def test_materialize_writes_reference_layout(tmp_path, capsys):
    out = tmp_path / "m"
    args = ["build", "--out", str(out), "--num-train", "3", "--num-test", "2", "--seed", "1"]
    assert S.main(args + ["--workers", "1", "--quiet", "--givens", "30", "--materialize", "5"]) == 0
    train = dataset.load_split(out, "train")
    assert train.metadata["augmentation"] is None
    np.testing.assert_array_equal(train.group_indices, [0, 6, 12, 18])
    np.testing.assert_array_equal(train.puzzle_indices, np.arange(19))
    q, a = _decode(train)
    assert len(set(q)) == 18
    for g in range(3):
        original = q[g * 6]
        for k in range(g * 6, g * 6 + 6):
            grid = S.parse_puzzle(q[k])
            assert q[k].count(".") == original.count(".") == 51
            assert S.solve(grid).num_solutions == 1
            assert S.grid_to_str(S.solve(grid).solution) == a[k]
    assert dataset.load_split(out, "test").inputs.shape == (2, 81)
    again = tmp_path / "m2"
    args2 = ["--workers", "1", "--quiet", "--givens", "30", "--materialize", "5"]
    assert (
        S.main(
            ["build", "--out", str(again), "--num-train", "3", "--num-test", "2", "--seed", "1"]
            + args2
        )
        == 0
    )
    assert _files(out) == _files(again)


def _write_csv(path, rows, header="source,question,answer,rating"):
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))


def _csv_rows(n, seed):
    recs, _ = S.generate_many(seed, n, S.GenSpec(min_givens=35), quiet=True)
    return [("gen", q, a, k % 4) for k, (q, a, *_) in enumerate(recs)]


def test_from_csv(tmp_path, capsys):
    rows = _csv_rows(10, 4)
    _write_csv(tmp_path / "train.csv", rows)
    _write_csv(tmp_path / "test.csv", rows[:3])
    out = tmp_path / "ds"
    args = [
        "from-csv",
        "--csv",
        str(tmp_path / "train.csv"),
        "--test-csv",
        str(tmp_path / "test.csv"),
    ]
    args += ["--out", str(out), "--min-rating", "1", "--subsample-size", "4", "--seed", "5"]
    assert S.main(args) == 0
    train, test = dataset.load_split(out, "train"), dataset.load_split(out, "test")
    q, a = _decode(train)
    eligible = {r[1]: r[2] for r in rows if r[3] >= 1}
    assert len(q) == 4 and all(eligible[x] == y for x, y in zip(q, a))
    assert len(test.inputs) == 2  # rows 1 and 2 of the first three pass the filter
    assert train.metadata["source_rating_histogram"]
    assert train.metadata["counts"] == {"train": 4, "test": 2, "train_test_overlap": 2}
    again = [x if x != str(out) else str(tmp_path / "again") for x in args]
    assert S.main(again) == 0
    assert _files(out) == _files(tmp_path / "again")


def _run_cli(args, stdin=None):
    return subprocess.run(
        [sys.executable, "-m", "data_gen.sudoku", *args],
        cwd=REPO,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_from_csv_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    rows = _csv_rows(3, 8)
    out = tmp_path / "ds"
    bad_header = tmp_path / "other.csv"
    _write_csv(bad_header, rows, header="id,puzzle,solution")
    assert S.main(["from-csv", "--csv", str(bad_header), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad_header) in err[0] and "source,question,answer,rating" in err[0]
    broken = list(rows)
    q, a = broken[1][1], broken[1][2]
    broken[1] = ("gen", q, a[1:] + a[0], 0)  # answer no longer obeys the rules
    _write_csv(tmp_path / "broken.csv", broken)
    assert S.main(["from-csv", "--csv", str(tmp_path / "broken.csv"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken.csv line 3" in err[0] and "Sudoku rules" in err[0]
    broken[1] = ("gen", q[:80], a, 0)
    _write_csv(tmp_path / "broken.csv", broken)
    assert S.main(["from-csv", "--csv", str(tmp_path / "broken.csv"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "line 3" in err[0] and "81 characters" in err[0]
    assert S.main(["from-csv", "--csv", str(tmp_path / "missing.csv"), "--out", str(out)]) == 2
    assert "missing.csv" in capsys.readouterr().err
    assert not out.exists()


def test_solve_command(tmp_path, capsys):
    unique = HARD["norvig_17"]
    multi = "." * 81
    contradiction = "11" + "." * 79
    f = tmp_path / "p.txt"
    f.write_text(
        f"{unique}\n\n  {unique.replace('.', '0')}  \n{unique[:-1]}\n{multi}\n{contradiction}\n"
    )
    assert S.main(["solve", str(f)]) == 2
    cap = capsys.readouterr()
    out = cap.out.splitlines()
    assert len(out) == 2 and out[0] == out[1]
    sol, rating = out[0].split()
    assert (
        obeys_rules([int(c) for c in sol]) and int(rating) == S.solve(S.parse_puzzle(unique)).rating
    )
    err = cap.err.strip().splitlines()
    assert len(err) == 3
    assert err[0].startswith(f"{f} line 4:") and "81 cells" in err[0]
    assert err[1] == f"{f} line 5: the puzzle has more than one solution."
    assert err[2] == f"{f} line 6: the puzzle has no solution."


def test_cli_entry_point_and_errors():
    r = _run_cli(["solve"], stdin=HARD["easter_monster"] + "\n")
    assert r.returncode == 0 and r.stdout.split()[0].isdigit() and len(r.stdout.split()[0]) == 81
    r = _run_cli(["solve"], stdin="123\n")
    assert r.returncode == 2 and r.stderr.strip() == (
        "<stdin> line 1: expected 81 cells of digits 1-9 or '.'/'0' for blanks, got 3."
    )
    for args in (
        ["build", "--out", "/tmp/never", "--givens", "10"],
        ["build", "--out", "/tmp/never", "--bogus"],
        ["build", "--out", "/tmp/never", "--givens", "30", "--min-givens", "20"],
        ["solve", "/nonexistent/puzzles.txt"],
    ):
        r = _run_cli(args)
        assert r.returncode == 2, args
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not Path("/tmp/never").exists()


def test_bench_reports_rates():
    result = S.bench(seconds=0.6, seed=1)
    assert result["generated"] >= 10
    assert [g["min_rating"] for g in result["generation"]][:2] == [0, 1]
    assert result["generation"][0]["fraction"] == 1.0
    assert any(s["rating"] == "famous" for s in result["solving"])
    assert "puzzles/s" in S._bench_table(result)


def test_givens_mix_is_per_puzzle_deterministic_and_independent_of_workers(tmp_path, capsys):
    base = ["build", "--num-train", "6", "--num-test", "3", "--seed", "5", "--quiet"]
    base += ["--givens-mix", "40-45"]
    assert S.main(base + ["--out", str(tmp_path / "a"), "--workers", "1"]) == 0
    assert S.main(base + ["--out", str(tmp_path / "b"), "--workers", "2"]) == 0
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    train, test = (
        dataset.load_split(tmp_path / "a", "train"),
        dataset.load_split(tmp_path / "a", "test"),
    )
    mix = train.metadata["givens_mix"]
    assert (mix["lo"], mix["hi"]) == (40, 45) and train.metadata["filters"]["min_givens"] == 40
    q = _decode(train)[0] + _decode(test)[0]
    used = train.metadata["counts"]["indices_used"]
    # Without duplicates puzzle i has exactly the givens its (seed, i) stream drew.
    if used == 9:
        assert [81 - p.count(".") for p in q] == [S.mix_givens(5, i, 40, 45) for i in range(9)]
    assert all(40 <= 81 - p.count(".") <= 45 for p in q)
    # The per-example rating array is the solver's rating of each stored puzzle.
    for split, qs in ((train, q[:6]), (test, q[6:])):
        assert split.extra[S.RATING_ARRAY].dtype == np.int32
        assert split.extra[S.RATING_ARRAY].tolist() == [
            S.solve(S.parse_puzzle(p)).rating for p in qs
        ]
    # The stream: uniform on [LO, HI], a function of (seed, index) only.
    draws = [S.mix_givens(0, i, 25, 45) for i in range(2000)]
    assert min(draws) == 25 and max(draws) == 45 and len(set(draws)) == 21
    assert draws == [S.mix_givens(0, i, 25, 45) for i in range(2000)]
    assert draws != [S.mix_givens(1, i, 25, 45) for i in range(2000)]


def test_givens_mix_bad_input_exits_2(tmp_path):
    for extra in (["--givens-mix", "45-25"], ["--givens-mix", "x"], ["--givens-mix", "10-30"],
                  ["--givens-mix", "25-45", "--givens", "30"]):  # fmt: skip
        r = _run_cli(["build", "--out", str(tmp_path / "never"), *extra])
        assert r.returncode == 2, extra
        assert len(r.stderr.strip().splitlines()) == 1 and "--givens" in r.stderr, r.stderr
    assert not (tmp_path / "never").exists()


def test_materialized_copies_share_their_originals_rating(tmp_path, capsys):
    out = tmp_path / "m"
    args = ["build", "--out", str(out), "--num-train", "3", "--num-test", "1", "--seed", "1"]
    assert S.main(args + ["--workers", "1", "--quiet", "--givens", "30", "--materialize", "2"]) == 0
    train = dataset.load_split(out, "train")
    r = train.extra[S.RATING_ARRAY].tolist()
    q = _decode(train)[0]
    assert len(r) == 9 and r == [S.solve(S.parse_puzzle(q[3 * (k // 3)])).rating for k in range(9)]
