"""Tests for trm_jax.arc_scoring: crop, inverse augmentation, voting, pass@K, submission (§6)."""

import json

import numpy as np
import pytest

from trm_jax.arc_scoring import (
    ArcVoter,
    crop,
    crop_batch,
    grid_hash,
    inverse_augment,
    parse_identifier,
)
from trm_jax.data.augment import dihedral_transform
from trm_jax.data.tokens import arc_grid_to_tokens


def _canvas(rows):
    """A 30x30 token canvas (PAD elsewhere) with ``rows`` written at the top-left."""
    canvas = np.zeros((30, 30), np.int32)
    for r, row in enumerate(rows):
        canvas[r, : len(row)] = row
    return canvas.reshape(-1)


def _augment(grid, tid, perm_digits):
    perm = np.array([int(c) for c in perm_digits])
    return dihedral_transform(perm[np.asarray(grid)], tid)


def _logit(q):
    return float(np.log(q / (1 - q)))


# --------------------------------------------------------------------------------------------------
# parse_identifier


def test_parse_identifier_augmented_and_plain():
    orig, tid, perm = parse_identifier("007bbfb7|||t6|||0312456789")
    assert (orig, tid) == ("007bbfb7", 6)
    np.testing.assert_array_equal(perm, [0, 3, 1, 2, 4, 5, 6, 7, 8, 9])
    orig, tid, perm = parse_identifier("007bbfb7")
    assert (orig, tid) == ("007bbfb7", 0)
    np.testing.assert_array_equal(perm, np.arange(10))


@pytest.mark.parametrize(
    "name",
    ["a|||t8|||0123456789", "a|||x1|||0123456789", "a|||t1|||012345678", "a|||t1|||0113456789"],
)
def test_parse_identifier_rejects_malformed_names(name):
    with pytest.raises(ValueError, match="malformed"):
        parse_identifier(name)


# --------------------------------------------------------------------------------------------------
# crop


def _crop_by_the_book(tokens):
    """§6 step 2 read literally: row scan with a shrinking column limit, keep the max area."""
    grid = np.asarray(tokens).reshape(30, 30)
    limit, best_area, best = 30, 0, (0, 0)
    for r in range(1, 31):
        for c in range(limit):
            if not 2 <= grid[r - 1, c] <= 11:
                limit = c
                break
        if r * limit > best_area:
            best_area, best = r * limit, (r, limit)
    return grid[: best[0], : best[1]] - 2


def test_crop_recovers_encoded_grids_including_ones_touching_the_canvas_edge():
    rng = np.random.default_rng(0)
    for h, w in [(3, 4), (1, 1), (30, 30), (30, 5), (5, 30), (29, 30), (30, 29)]:
        grid = rng.integers(0, 10, size=(h, w))
        tokens = arc_grid_to_tokens(grid)
        np.testing.assert_array_equal(crop(tokens), grid)
    # The EOS row/column of a 3x4 grid is where the crop stops.
    canvas = arc_grid_to_tokens(np.full((3, 4), 7)).reshape(30, 30)
    assert canvas[3, :4].tolist() == [1] * 4 and canvas[:3, 4].tolist() == [1] * 3


def test_crop_of_ragged_predictions_by_hand():
    c = 5  # a colour token (colour 3)
    # Row limits 5, 3, 3 then EOS: areas 5, 6, 9 -> 3x3.
    tokens = _canvas([[c] * 5 + [1], [c] * 3 + [0, c], [c] * 4 + [1], [1]])
    np.testing.assert_array_equal(crop(tokens), np.full((3, 3), 3))
    # Row limits 6, 3: areas 6, 6 -> the first (1x6) wins the tie.
    tokens = _canvas([[c] * 6 + [1], [c] * 3 + [1], [0]])
    assert crop(tokens).shape == (1, 6)
    # A tall thin rectangle beats the wide first row: limits 4, 1, 1, 1, 1 -> 5x1.
    tokens = _canvas([[c] * 4 + [0]] + [[c, 12]] * 4 + [[1]])  # 12 is not a colour token
    assert crop(tokens).shape == (5, 1)
    # Nothing at the top-left: empty grid; PAD and EOS never count as colours.
    assert crop(_canvas([[0, c, c]])).shape == (0, 0)
    assert crop(_canvas([[1, c, c]])).shape == (0, 0)
    # A whole canvas of colours is one 30x30 grid.
    np.testing.assert_array_equal(crop(np.full(900, 11)), np.full((30, 30), 9))


def test_crop_batch_matches_the_literal_scan_on_random_canvases():
    rng = np.random.default_rng(1)
    tokens = rng.integers(2, 12, size=(64, 900))
    # Sprinkle a few non-colour tokens, mostly near the top-left so crops are irregular.
    for b in range(64):
        for _ in range(rng.integers(0, 6)):
            r, col = rng.integers(0, 12, size=2)
            tokens[b, r * 30 + col] = rng.choice([0, 1, 12])
    got = crop_batch(tokens)
    for b in range(64):
        want = _crop_by_the_book(tokens[b])
        assert got[b].shape == want.shape
        np.testing.assert_array_equal(got[b], want)
        assert got[b].dtype == np.uint8


# --------------------------------------------------------------------------------------------------
# inverse augmentation and hashes


@pytest.mark.parametrize("tid", range(8))
def test_inverse_augment_undoes_colour_map_and_dihedral(tid):
    grid = np.arange(12).reshape(3, 4) % 10
    perm_digits = "0734918265"
    augmented = _augment(grid, tid, perm_digits)
    _, parsed_tid, perm = parse_identifier(f"x|||t{tid}|||{perm_digits}")
    np.testing.assert_array_equal(inverse_augment(augmented, parsed_tid, perm), grid)


def test_grid_hash_depends_on_shape_and_colours():
    assert grid_hash([[1, 2], [3, 4]]) == grid_hash(np.array([[1, 2], [3, 4]], np.int64))
    assert grid_hash([[1, 2, 3, 4]]) != grid_hash([[1, 2], [3, 4]])
    assert grid_hash([[1, 2], [3, 4]]) != grid_hash([[1, 2], [3, 5]])


# --------------------------------------------------------------------------------------------------
# ArcVoter

# Puzzle "p1": two test pairs; puzzle "p2": one. Grids are non-square with several colours, so a
# wrong inverse (dihedral or colour map) would change hashes and lose votes.
A1 = [[1, 2, 0], [3, 0, 4]]
Y1 = [[5, 1], [0, 2], [3, 3]]  # label of p1's first test input
W1 = [[5, 1], [0, 2], [3, 4]]  # a wrong answer
A2 = [[6, 6, 7, 0]]
Y2 = [[8], [9]]
B = [[2, 0], [0, 2], [1, 1]]
Z = [[4, 4, 4]]  # label of p2's test input
X = [[4, 4]]

IDENTIFIERS = [
    "<blank>",
    "p1",
    "p1|||t1|||0321456789",
    "p1|||t4|||0987654321",
    "p2",
    "p2|||t6|||0123456798",
    "p2|||t7|||0567891234",
]
TEST_PUZZLES = {
    "p1": {
        "train": [{"input": [[0]], "output": [[1]]}],
        "test": [{"input": A1, "output": Y1}, {"input": A2, "output": Y2}],
    },
    "p2": {"train": [], "test": [{"input": B, "output": Z}]},
}


def _rows(spec):
    """spec: [(identifier, input grid, predicted grid, q)] in ORIGINAL orientation/colours."""
    inputs, ids, logits, preds = [], [], [], []
    for identifier, inp, pred, q in spec:
        _, tid, perm = parse_identifier(IDENTIFIERS[identifier])
        perm_digits = "".join(map(str, perm))
        inputs.append(arc_grid_to_tokens(_augment(inp, tid, perm_digits)))
        preds.append(arc_grid_to_tokens(_augment(pred, tid, perm_digits)))
        ids.append(identifier)
        logits.append(_logit(q))
    return (
        np.stack(inputs).astype(np.int32),
        np.asarray(ids, np.int32),
        np.asarray(logits, np.float32),
        np.stack(preds).astype(np.int32),
    )


BATCH = [
    # p1, first test input: Y1 and W1 get 2 votes each; W1's mean q (0.85) beats Y1's (0.55).
    (1, A1, Y1, 0.9),
    (2, A1, Y1, 0.2),
    (3, A1, W1, 0.8),
    (3, A1, W1, 0.9),
    # p1, second test input: no votes at all.
    # p2: Z has 3 low-confidence votes, X one confident vote; the count decides.
    (4, B, Z, 0.1),
    (5, B, Z, 0.1),
    (6, B, Z, 0.1),
    (5, B, X, 0.99),
]


def test_voter_ranks_by_votes_then_mean_q_and_scores_pass_at_k():
    voter = ArcVoter(IDENTIFIERS)
    inputs, ids, logits, preds = _rows(BATCH)
    # A padding row (identifier 0) whose content must be ignored.
    inputs = np.concatenate([inputs, np.zeros((1, 900), np.int32)])
    preds = np.concatenate([preds, np.full((1, 900), 5, np.int32)])
    ids = np.concatenate([ids, [0]]).astype(np.int32)
    logits = np.concatenate([logits, [10.0]]).astype(np.float32)
    voter.add_batch(inputs, ids, logits, preds)

    ranking = voter.ranked("p1", A1)
    assert [(h, n) for h, n, _ in ranking] == [(grid_hash(W1), 2), (grid_hash(Y1), 2)]
    np.testing.assert_allclose([q for _, _, q in ranking], [0.85, 0.55], rtol=1e-6)
    ranking = voter.ranked("p2", B)
    assert [(h, n) for h, n, _ in ranking] == [(grid_hash(Z), 3), (grid_hash(X), 1)]
    assert voter.ranked("p1", A2) == []
    assert sum(
        n for by_input in voter.votes.values() for t in by_input.values() for n, _ in t.values()
    ) == len(BATCH)

    metrics, submission = voter.result(TEST_PUZZLES, pass_ks=(1, 2, 5))
    # p1: pair 1 right at K >= 2 only, pair 2 never -> 0, 0.5, 0.5; p2: 1, 1, 1.
    assert metrics == pytest.approx({"ARC/pass@1": 0.5, "ARC/pass@2": 0.75, "ARC/pass@5": 0.75})

    assert submission == {
        "p1": [
            {"attempt_1": W1, "attempt_2": Y1},
            {"attempt_1": [[0]], "attempt_2": [[0]]},
        ],
        "p2": [{"attempt_1": Z, "attempt_2": X}],
    }
    json.dumps(submission)  # plain ints and lists: writable as submission.json


def test_voter_default_pass_ks_and_single_prediction_pads_attempt_2():
    voter = ArcVoter(IDENTIFIERS)
    voter.add_batch(*_rows([(5, B, Z, 0.3), (6, B, Z, 0.4)]))
    metrics, submission = voter.result({"p2": TEST_PUZZLES["p2"]})
    assert set(metrics) == {f"ARC/pass@{k}" for k in (1, 2, 5, 10, 100, 1000)}
    assert all(v == 1.0 for v in metrics.values())
    assert submission == {"p2": [{"attempt_1": Z, "attempt_2": Z}]}


def test_voter_keeps_rounds_apart_unless_merged():
    first, second = ArcVoter(IDENTIFIERS), ArcVoter(IDENTIFIERS)
    first.add_batch(*_rows([(4, B, X, 0.5)]))
    second.add_batch(*_rows([(5, B, Z, 0.5), (6, B, Z, 0.5)]))
    puzzles = {"p2": TEST_PUZZLES["p2"]}
    assert first.result(puzzles, pass_ks=(1,))[0] == {"ARC/pass@1": 0.0}
    assert second.result(puzzles, pass_ks=(1,))[0] == {"ARC/pass@1": 1.0}

    merged = ArcVoter(IDENTIFIERS).merge(first).merge(second)
    together = ArcVoter(IDENTIFIERS)
    together.add_batch(*_rows([(4, B, X, 0.5), (5, B, Z, 0.5), (6, B, Z, 0.5)]))
    assert merged.votes == together.votes
    assert merged.result(puzzles) == together.result(puzzles)
    # Merging did not change the voters merged in.
    assert first.result(puzzles, pass_ks=(1,))[0] == {"ARC/pass@1": 0.0}


def test_voter_rejects_identifiers_outside_the_metadata():
    voter = ArcVoter(IDENTIFIERS)
    inputs, ids, logits, preds = _rows([(4, B, Z, 0.5)])
    with pytest.raises(ValueError, match="outside the 7 identifiers"):
        voter.add_batch(inputs, np.array([7], np.int32), logits, preds)
