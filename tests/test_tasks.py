"""The task records: parse errors are one sentence, answer checks accept right and reject wrong
answers, conflict masks, text formatting and which task a (vocabulary, length) pair is."""

import numpy as np
import pytest

from data_gen import maze as maze_gen
from trm_jax import tasks
from trm_jax.tasks import ARC, MAZE, SUDOKU, PuzzleError, sudoku

SOLUTION = "236145879587926413941378265853712946762594381419683752628459137374261598195837624"


def _grid(s: str) -> np.ndarray:
    return np.array([int(c) for c in s.replace(".", "0")]).reshape(9, 9)


def _one_sentence(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text and text.endswith(".") and text.count(". ") == 0, text
    return text


@pytest.fixture(scope="module")
def maze():
    question, answer, length = maze_gen.generate_one(0, 1, maze_gen.MazeSpec())
    return question, answer, length


def _chars(s: str, side: int = 30) -> np.ndarray:
    return np.array(list(s)).reshape(side, side)


# --------------------------------------------------------------------------------------------
# Which task


def test_of_shape_tells_the_three_tasks_apart():
    assert tasks.of_shape(11, 81) is SUDOKU
    assert tasks.of_shape(6, 900) == MAZE
    assert tasks.of_shape(6, 400).side == 20 and tasks.of_shape(6, 400).name == "maze"
    assert tasks.of_shape(12, 900) == ARC
    assert tasks.of_shape(12, 100).side == 10 and tasks.of_shape(12, 100).name == "arc"
    for vocab, length in ((11, 900), (6, 899), (12, 80), (10, 81), (7, 900)):
        assert tasks.of_shape(vocab, length) is None, (vocab, length)


def test_named_sizes_the_record_and_rejects_unknown_names():
    assert tasks.named("sudoku") is SUDOKU
    assert tasks.named("maze", 400).side == 20 and tasks.named("maze").side == 30
    assert tasks.named("arc", 900) == ARC and tasks.named("arc", 400).seq_len == 400
    with pytest.raises(PuzzleError, match="task must be one of"):
        tasks.named("chess")


# --------------------------------------------------------------------------------------------
# Sudoku


@pytest.mark.parametrize(
    "puzzle, match",
    [
        ("123", "81 characters"),
        ("x" * 81, "may hold only"),
        ("55" + "." * 79, "digit 5 appears twice in row 1"),
        ("5" + "." * 8 + "5" + "." * 71, "digit 5 appears twice in column 1"),
        ("5" + "." * 9 + "5" + "." * 70, "digit 5 appears twice in box 1"),
        (np.zeros((9, 8), int), "9x9"),
    ],
)
def test_sudoku_parse_errors_are_one_sentence(puzzle, match):
    with pytest.raises(PuzzleError, match=match) as e:
        SUDOKU.parse(puzzle)
    _one_sentence(e)


def test_sudoku_parse_and_decode_round_trip():
    puzzle = "." * 40 + SOLUTION[40:]
    tokens = SUDOKU.parse(puzzle)
    assert tokens.dtype == np.uint8 and tokens.shape == (81,)
    np.testing.assert_array_equal(SUDOKU.decode(tokens), _grid(puzzle))
    np.testing.assert_array_equal(SUDOKU.parse(_grid(puzzle)), tokens)


def test_sudoku_check_accepts_a_solution_and_rejects_wrong_ones():
    solution = _grid(SOLUTION)
    puzzle = solution.copy()
    puzzle[::2, ::3] = 0
    ok, why = SUDOKU.check(puzzle, solution)
    assert ok and "valid" in why
    clash = solution.copy()
    clash[0, 0] = 5
    assert SUDOKU.check(puzzle, clash) == (False, "digit 5 appears twice in row 1")
    blank = solution.copy()
    blank[4, 4] = 0
    assert not SUDOKU.check(puzzle, blank)[0]
    # A valid grid that does not keep a given: relabel digits 1 <-> 2 everywhere.
    relabelled = np.where(solution == 1, 2, np.where(solution == 2, 1, solution))
    assert SUDOKU.valid(relabelled)[0]
    ok, why = SUDOKU.check(solution, relabelled)
    assert not ok and "given" in why


def test_sudoku_conflicts_mark_clashing_digits():
    solution = _grid(SOLUTION)
    assert not SUDOKU.conflicts(solution).any()
    wrong = solution.copy()
    wrong[0, 0] = 5  # 5 already in row 0 (col 5), column 0 (row 1) and the top-left box (1, 0)
    mask = SUDOKU.conflicts(wrong)
    assert mask.shape == (9, 9) and mask[0, 0] and mask[0, 5] and mask[1, 0]
    assert mask.sum() == 3
    wrong[4, 4] = 0  # blanks never conflict
    assert not SUDOKU.conflicts(wrong)[4, 4]
    # Batched: one mask per grid.
    both = SUDOKU.conflicts(np.stack([solution, wrong]))
    assert both.shape == (2, 9, 9) and not both[0].any() and both[1].sum() == 3


def test_sudoku_valid_and_keeps_givens_are_vectorised():
    solution = _grid(SOLUTION).reshape(-1)
    wrong = solution.copy()
    wrong[[0, 1]] = wrong[[1, 0]]  # swap two cells of row 1: columns break
    np.testing.assert_array_equal(SUDOKU.valid(np.stack([solution, wrong])), [True, False])
    puzzle = np.where(np.arange(81) % 2 == 0, solution, 0)
    np.testing.assert_array_equal(
        SUDOKU.keeps_givens(np.stack([puzzle, puzzle]), np.stack([solution, wrong])),
        [True, False],
    )


def test_sudoku_text():
    lines = SUDOKU.format(_grid("." * 81))
    assert len(lines) == 11 and lines[3] == "------+-------+------"
    assert lines[0] == ". . . | . . . | . . ."
    body = SUDOKU.format_answer(_grid("." * 81), _grid(SOLUTION))
    assert body[-1] == "answer: " + SOLUTION
    assert SUDOKU.verdict(_grid("." * 81), _grid(SOLUTION)).endswith("yes")


# --------------------------------------------------------------------------------------------
# Maze


def test_maze_parse_errors_are_one_sentence(maze):
    question, answer, _ = maze
    lines = [question[i : i + 30] for i in range(0, 900, 30)]
    cases = [
        ("\n".join(lines[:29]), "30 lines of 30 characters, got 29 lines"),
        (question.replace("G", " "), "has no 'G'"),
        (question.replace(" ", "S", 1), "has 2 'S'"),
        (answer, "found 'o'"),
        (np.zeros((2, 2, 2)), "2-D grid"),
    ]
    for puzzle, match in cases:
        with pytest.raises(PuzzleError, match=match) as e:
            MAZE.parse(puzzle)
        _one_sentence(e)
    assert MAZE.line_problem(question[:100]) == ("expected 900 characters (a 30x30 maze), got 100")


def test_maze_parse_takes_lines_one_line_or_a_grid(maze):
    question, _, _ = maze
    lines = "\n".join(question[i : i + 30] for i in range(0, 900, 30)) + "\n"
    tokens = MAZE.parse(question)
    np.testing.assert_array_equal(MAZE.parse(lines), tokens)
    np.testing.assert_array_equal(MAZE.parse(_chars(question)), tokens)
    np.testing.assert_array_equal(MAZE.decode(tokens), _chars(question))


def test_maze_check_accepts_only_a_shortest_path(maze):
    question, answer, length = maze
    q = _chars(question)
    ok, why = MAZE.check(q, _chars(answer))
    assert ok and f"{length} steps" in why
    # A gap in the path.
    assert not MAZE.check(q, _chars(answer.replace("o", " ", 1)))[0]
    # Path over a wall.
    wall = answer.index("#", 31)
    ok, why = MAZE.check(q, _chars(answer[:wall] + "o" + answer[wall + 1 :]))
    assert not ok
    # A changed cell that is not on the path.
    assert not MAZE.check(q, _chars(answer.replace("#", " ", 1)))[0]
    # The wrong shape.
    assert not MAZE.check(q, np.array([["S"]]))[0]


def test_maze_check_rejects_a_connected_path_that_is_not_shortest():
    # An open 5x5 room in a walled 7x7 maze: S top-left, G bottom-right, shortest path 8 steps.
    rows = ["#######"] + ["#" + " " * 5 + "#"] * 5 + ["#######"]
    q = np.array([list(r) for r in rows])
    q[1, 1], q[5, 5] = "S", "G"
    record = tasks.Maze(side=7)
    shortest = q.copy()
    for r, c in [(1, 2), (1, 3), (1, 4), (1, 5), (2, 5), (3, 5), (4, 5)]:
        shortest[r, c] = "o"
    ok, why = record.check(q, shortest)
    assert ok and "8 steps" in why
    detour = q.copy()  # a connected S-G path of 12 steps
    for r, c in [(2, 1), (3, 1), (3, 2), (3, 3), (2, 3), (1, 3), (1, 4), (1, 5), (2, 5), (3, 5)]:
        detour[r, c] = "o"
    detour[4, 5] = "o"
    ok, why = record.check(q, detour)
    assert not ok and "(11 cells) is not a shortest S-G path (8 steps)" in why
    loop = q.copy()  # 8 steps along one branch plus a dead end of marked cells
    for r, c in [(2, 1), (3, 1), (4, 1), (5, 1), (5, 2), (5, 3), (5, 4), (4, 3)]:
        loop[r, c] = "o"
    assert not record.check(q, loop)[0]
    extra = shortest.copy()  # the shortest path plus a stray marked cell
    extra[3, 2] = "o"
    assert not record.check(q, extra)[0]


def test_maze_solve_and_bfs_agree_with_the_generator(maze):
    question, answer, length = maze
    got, steps, count = MAZE.solve(question)
    assert got == answer and steps == length and count == 1
    dist, _ = tasks.bfs([ch != "#" for ch in question], question.index("S"), 30)
    assert dist[question.index("G")] == length
    walled = question.replace("G", " ")[:899] + "G"
    assert MAZE.solve(walled) == (None, -1, 0)


def test_maze_text(maze):
    question, answer, _ = maze
    assert MAZE.format(_chars(answer)) == [answer[i : i + 30] for i in range(0, 900, 30)]
    assert MAZE.verdict(_chars(question), _chars(answer)).startswith("shortest path: yes")
    assert not MAZE.conflicts(_chars(answer)).any()


# --------------------------------------------------------------------------------------------
# ARC


@pytest.mark.parametrize(
    "grid, match",
    [
        (np.zeros((31, 2), int), "larger than the 30x30"),
        ([[0, 10]], "outside 0-9"),
        ([[0, 1], [2]], "rectangular|rectangle"),
        ([], "non-empty"),
        ([[0.5]], "integer"),
    ],
)
def test_arc_parse_errors_are_one_sentence(grid, match):
    with pytest.raises(PuzzleError, match=match) as e:
        ARC.parse(grid)
    _one_sentence(e)


def test_arc_parse_decode_round_trip_and_canvas_side():
    grid = np.arange(12).reshape(3, 4) % 10
    tokens = ARC.parse(grid)
    assert tokens.shape == (900,)
    np.testing.assert_array_equal(ARC.decode(tokens), grid)
    small = tasks.Arc(side=5)
    assert small.parse(grid).shape == (25,)
    np.testing.assert_array_equal(small.decode(small.parse(grid)), grid)
    with pytest.raises(PuzzleError, match="larger than the 5x5 canvas"):
        small.parse(np.zeros((6, 2), int))


def test_arc_check_compares_with_the_expected_grid():
    expected = np.array([[1, 2], [3, 4]])
    ok, why = ARC.check(None, expected.copy(), expected)
    assert ok and "equals" in why
    ok, why = ARC.check(None, np.array([[1, 2], [3, 5]]), expected)
    assert not ok and "1 of 4 cells" in why
    ok, why = ARC.check(None, np.array([[1, 2, 3], [4, 5, 6]]), expected)
    assert not ok and "2x3" in why and "2x2" in why
    ok, _ = ARC.check(None, np.zeros((0, 0), int), expected)
    assert not ok
    assert ARC.check(None, expected, None)[0] is False
    assert ARC.verdict(None, expected, None) is None
    assert ARC.verdict(None, expected, expected) == "matches the expected output: yes"


def test_arc_text():
    assert ARC.format(np.array([[1, 2], [3, 4]])) == ["1 2", "3 4"]
    assert ARC.format(np.zeros((0, 0), int)) == ["(empty grid)"]


# ---- held-out accuracy by difficulty ------------------------------------------------------------


def _grid_with_givens(n: int, solution: np.ndarray) -> np.ndarray:
    """Tokens of a puzzle showing the first ``n`` cells of ``solution`` (digits 1..9)."""
    tokens = solution.astype(np.int64) + 1
    tokens[n:] = 1  # blank
    return tokens


def test_difficulty_breakdown_by_hand():
    sol = (np.arange(81) % 9 + 1).astype(np.int64)  # any digits: only equality matters
    label = sol + 1
    # (givens, rating, solved?) of six puzzles, tabulated by hand below.
    rows = [
        (24, 3, True),
        (27, 0, False),
        (30, 1, True),
        (45, 0, True),
        (44, 0, False),
        (50, 0, True),
    ]
    inputs = np.stack([_grid_with_givens(g, sol) for g, _, _ in rows])
    labels = np.stack([label] * len(rows))
    preds = labels.copy()
    for k, (_, _, ok) in enumerate(rows):
        if not ok:
            preds[k, 80] = 2 if label[80] != 2 else 3  # one wrong cell: not exact
    ratings = np.array([r for _, r, _ in rows])
    b = sudoku.difficulty_breakdown(inputs, labels, preds, ratings)
    got = {r["bucket"]: (r["examples"], r["exact"], r["exact_accuracy"]) for r in b["givens"]}
    assert got == {
        "22-27": (2, 1, 0.5),
        "28-33": (1, 1, 1.0),
        "34-39": (0, 0, None),
        "40-45": (2, 1, 0.5),
        "other": (1, 1, 1.0),
    }
    assert [r["bucket"] for r in b["givens"]] == ["22-27", "28-33", "34-39", "40-45", "other"]
    search = {r["bucket"]: (r["examples"], r["exact"]) for r in b["search"]}
    assert search == {"rating 0 (singles)": (4, 2), "rating > 0 (search)": (2, 2)}
    assert (b["examples"], b["exact_accuracy"]) == (6, 4 / 6)
    text = sudoku.format_breakdown(b)
    assert "givens 22-27" in text and "0.5000  (1/2)" in text and "givens 34-39" in text
    assert "rating > 0 (search)" in text and "(2/2)" in text
    # Without ratings there is no search row; no "other" bucket when every puzzle fits one.
    b = sudoku.difficulty_breakdown(inputs[:5], labels[:5], preds[:5])
    assert b["search"] is None and [r["bucket"] for r in b["givens"]][-1] == "40-45"
    assert "rating" not in sudoku.format_breakdown(b)
    # Ignored label cells (id 0) do not count against a row.
    labels2, preds2 = labels.copy(), preds.copy()
    labels2[1, 80] = 0
    assert sudoku.difficulty_breakdown(inputs, labels2, preds2)["exact_accuracy"] == 5 / 6
    assert [sudoku.givens_bucket(g) for g in (21, 22, 33, 34, 45, 46)] == [
        "other", "22-27", "28-33", "34-39", "40-45", "other"
    ]  # fmt: skip
