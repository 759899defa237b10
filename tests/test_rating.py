"""``cascade rate``: the study's checks, the vote store (sides undone, replays, resumes, spread, attention
checks), the statistics and the report on vote tables whose answers are known, 20 concurrent raters over HTTP,
a server killed with SIGKILL, and the command's errors."""

import hashlib
import json
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import imageio.v3 as iio
import numpy as np
import pytest

from cascade.cli import main
from cascade.data import ShapesWorld, render_clip
from cascade.data.media_io import read_video, write_video
from cascade.rating.checks import spoil
from cascade.rating.report import build_report, markdown, write_report
from cascade.rating.server import create_app, serving
from cascade.rating.simulated import ShapesJudge, SimulatedRater, look_score, random_judge
from cascade.rating.statistics import bootstrap_shares, krippendorff_alpha, pairwise_agreement
from cascade.rating.store import (
    AnsweredPairError,
    UnknownPairError,
    UnknownRaterError,
    VoteStore,
    read_study_votes,
    undo_sides,
)
from cascade.rating.study import load_study
from cascade.testing.study_folders import write_study_folders

from browser import free_port

PROMPTS = 10


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """``(a_dir, b_dir, prompts_file)`` of a 10-prompt shapes-world study (8 frames of 16x16)."""
    return write_study_folders(tmp_path_factory.mktemp("study"), PROMPTS)


@pytest.fixture(scope="module")
def study(folders):
    return load_study(*folders)


@pytest.fixture
def copied(folders, tmp_path):
    """A copy of the study's folders to spoil."""
    shutil.copytree(folders[0].parent, tmp_path / "study")
    return tmp_path / "study" / "a", tmp_path / "study" / "b", tmp_path / "study" / "prompts.txt"


def test_a_study_pairs_the_folders_videos_by_prompt_with_their_hashes(study, folders):
    assert study.name == "a vs b" and len(study.items) == PROMPTS
    item = study.items[3]
    assert item.prompt == folders[2].read_text().splitlines()[3]
    assert item.a.path == (folders[0] / "00003.mp4").resolve()
    assert item.b.sha256 == hashlib.sha256((folders[1] / "00003.mp4").read_bytes()).hexdigest()
    assert load_study(*folders).fingerprint == study.fingerprint


@pytest.mark.parametrize(
    ("spoil_folders", "message"),
    [
        (
            lambda a, b, p: shutil.copy(b / "00000.mp4", b / "00010.mp4"),
            "a video for prompt 10, but the prompt file has 10",
        ),
        (lambda a, b, p: (b / "00003.mp4").unlink(), "B_DIR '{b}' has no video for prompt 3"),
        (lambda a, b, p: (a / "00005.mp4").write_bytes(b"not a video"), "A_DIR: cannot read video"),
        (
            lambda a, b, p: (b / "report.json").write_text(
                json.dumps({"videos": [{"index": 2, "prompt": "a cat"}]})
            ),
            "holds videos for other prompts: '{b}/report.json' says video 2 was made for 'a cat'",
        ),
        (lambda a, b, p: p.unlink(), "prompt file '{p}' does not exist"),
    ],
)
def test_bad_study_folders_get_a_clear_error(copied, spoil_folders, message):
    a, b, prompts = copied
    spoil_folders(a, b, prompts)
    with pytest.raises(ValueError) as error:
        load_study(a, b, prompts)
    assert message.format(a=a, b=b, p=prompts) in str(error.value)


def test_the_same_folder_twice_is_refused(folders):
    with pytest.raises(ValueError, match="A_DIR and B_DIR are the same folder"):
        load_study(folders[0], folders[0], folders[2])


def test_an_unreadable_database_gets_a_clear_error(tmp_path):
    garbage = tmp_path / "votes.sqlite"
    garbage.write_bytes(b"this is not a database, it is text " * 100)
    with pytest.raises(ValueError, match="is not a readable SQLite database: file is not a database"):
        VoteStore(garbage)
    with pytest.raises(ValueError, match="is not a readable SQLite database"):
        read_study_votes(garbage)
    with pytest.raises(ValueError, match="does not exist"):
        read_study_votes(tmp_path / "missing.sqlite")
    sqlite3.connect(tmp_path / "other.sqlite").execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(ValueError, match="is not a study database of cascade rate"):
        read_study_votes(tmp_path / "other.sqlite")


def test_a_vote_is_stored_with_its_sides_undone_once_and_only_for_its_rater(study, tmp_path):
    store = VoteStore(tmp_path / "votes.sqlite")
    study_id, rater, other = store.register_study(study), store.add_rater(), store.add_rater()
    assignment = store.next_assignment(study_id, rater, random.Random(0), check_share=0.0)
    vote, duplicate = store.record_vote(study_id, rater, assignment.id, "left", "right")
    assert not duplicate and vote["kind"] == "pair" and vote["left_shown"] == assignment.left_shown
    assert vote["quality_choice"] == assignment.left_shown  # "left" undone: the model shown on the left
    assert vote["text_choice"] == {"A": "B", "B": "A"}[assignment.left_shown]
    item = study.items[assignment.prompt_index]
    assert (vote["a_sha256"], vote["b_path"], vote["prompt"]) == (
        item.a.sha256,
        str(item.b.path),
        item.prompt,
    )
    assert store.record_vote(study_id, rater, assignment.id, "left", "right")[1]  # a replay: recorded once
    with pytest.raises(AnsweredPairError, match="already answered with other answers"):
        store.record_vote(study_id, rater, assignment.id, "same", "right")
    with pytest.raises(UnknownPairError, match="was never served to rater"):
        store.record_vote(study_id, other, assignment.id, "left", "right")
    with pytest.raises(UnknownPairError, match="'forged' was never served"):
        store.record_vote(study_id, rater, "forged", "left", "right")
    with pytest.raises(ValueError, match=r"`quality` must be one of \['left', 'right', 'same'\], got 'A'"):
        store.record_vote(study_id, rater, assignment.id, "A", "right")
    with pytest.raises(UnknownRaterError, match="reload the page"):
        store.next_assignment(study_id, "nobody", random.Random(0), 0.0)
    _, votes = read_study_votes(store.path)
    assert len(votes) == 1 and votes[0]["rater"] == rater


def test_a_rater_resumes_the_open_pair_and_is_done_after_every_prompt(study, tmp_path):
    store = VoteStore(tmp_path / "votes.sqlite")
    study_id, rater, rng = store.register_study(study), store.add_rater(), random.Random(1)
    first = store.next_assignment(study_id, rater, rng, 0.0)
    assert store.next_assignment(study_id, rater, rng, 0.0) == first  # a reload shows the same pair
    seen = []
    for _ in range(PROMPTS):
        assignment = store.next_assignment(study_id, rater, rng, 0.0)
        seen.append(assignment.prompt_index)
        store.record_vote(study_id, rater, assignment.id, "same", "same")
    assert sorted(seen) == list(range(PROMPTS)) and store.progress(study_id, rater) == (PROMPTS, PROMPTS)
    assert store.next_assignment(study_id, rater, rng, 0.0) is None
    with pytest.raises(ValueError, match="another --study name"):  # same name, other videos
        store.register_study(
            type(study)(study.name, study.a_dir, study.b_dir, study.prompts_file, study.items[:3])
        )


def test_every_prompt_gets_votes_before_any_gets_many(study, tmp_path):
    store = VoteStore(tmp_path / "votes.sqlite")
    study_id, rng = store.register_study(study), random.Random(2)
    raters = [store.add_rater() for _ in range(3)]
    counts = np.zeros(PROMPTS, int)
    for _ in range(PROMPTS):
        for rater in raters:
            assignment = store.next_assignment(study_id, rater, rng, 0.0)
            store.record_vote(study_id, rater, assignment.id, "left", "left")
            counts[assignment.prompt_index] += 1
            assert counts.max() - counts.min() <= 1
    assert (counts == 3).all()


def test_attention_checks_pair_a_video_with_its_spoiled_copy(study, tmp_path):
    store = VoteStore(tmp_path / "votes.sqlite")
    study_id, rater, rng = store.register_study(study), store.add_rater(), random.Random(3)
    kinds = []
    while (assignment := store.next_assignment(study_id, rater, rng, check_share=0.5)) is not None:
        kinds.append(assignment.kind)
        vote, _ = store.record_vote(study_id, rater, assignment.id, "left", "left")
        if assignment.kind == "check":
            assert vote["quality_choice"] == assignment.left_shown in ("intact", "degraded")
            assert vote["check_model"] in ("A", "B") and vote["check_kind"] in ("shuffled", "noise")
    assert kinds.count("pair") == PROMPTS and 3 <= kinds.count("check") <= 20  # about as many (seeded draw)
    noise_only = store.add_rater()
    while (assignment := store.next_assignment(study_id, noise_only, rng, 0.5, ("noise",))) is not None:
        assert assignment.check_kind in (None, "noise")
        store.record_vote(study_id, noise_only, assignment.id, "same", "same")
    with pytest.raises(ValueError, match=r"`check_share` must be a number in \[0.0, 0.5\], got 0.9"):
        store.next_assignment(study_id, rater, rng, check_share=0.9)


def test_spoiled_copies_are_plainly_worse():
    frames = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    shuffled = spoil(frames, "shuffled", seed=0)
    assert not (shuffled == frames).all() and sorted(map(bytes, shuffled)) == sorted(map(bytes, frames))
    for seed in range(20):  # never the frames' own order
        assert not (spoil(frames[:2], "shuffled", seed) == frames[:2]).all()
    noisy = spoil(np.zeros_like(frames), "noise", seed=0)
    assert noisy.mean() > 40 and (spoil(frames, "noise", 0) == spoil(frames, "noise", 0)).all()
    with pytest.raises(ValueError, match="at least 2 frames to shuffle"):
        spoil(frames[:1], "shuffled", 0)
    with pytest.raises(ValueError, match=r"`kind` must be one of \['shuffled', 'noise'\], got 'blur'"):
        spoil(frames, "blur", 0)


def test_bootstrap_over_prompts_gives_the_binomial_interval():
    # 20 prompts, half all-A, half all-B: a resample's share of A is Binomial(20, 1/2) / 20, whose 2.5% and
    # 97.5% quantiles are 6/20 and 14/20 (P(X <= 5) = 0.021 < 0.025 < P(X <= 6) = 0.058).
    groups = [["A"] * 3] * 10 + [["B"] * 3] * 10
    shares = bootstrap_shares(groups, ("A", "same", "B"), resamples=20000, seed=0)
    assert shares["A"] == {"count": 30, "share": 0.5, "low": 0.3, "high": 0.7}
    assert shares["same"] == {"count": 0, "share": 0.0, "low": 0.0, "high": 0.0}
    constant = bootstrap_shares([["A", "B", "B", "same"]] * 5, ("A", "same", "B"), resamples=100)
    assert constant["B"] == {"count": 10, "share": 0.5, "low": 0.5, "high": 0.5}  # no spread between prompts
    with pytest.raises(ValueError, match=r"outcomes \['C'\] outside"):
        bootstrap_shares([["C"]], ("A", "B"))


def test_krippendorff_alpha_and_agreement_on_known_tables():
    # Units (A, A), (B, B), (A, B): o_AA = o_BB = 2, o_AB = o_BA = 1, n_A = n_B = 3, n = 6;
    # alpha = 1 - (n - 1) * 2 / (2 * 3 * 3) = 1 - 10/18 = 4/9.
    assert krippendorff_alpha([["A", "A"], ["B", "B"], ["A", "B"], ["A"]]) == pytest.approx(4 / 9)
    assert pairwise_agreement([["A", "A"], ["B", "B"], ["A", "B"], ["A"]]) == pytest.approx(2 / 3)
    assert krippendorff_alpha([["A", "A", "A"], ["B", "B"], ["same", "same"]]) == 1.0
    assert krippendorff_alpha([["A", "A"], ["A", "A"]]) is None  # no variation: undefined
    assert krippendorff_alpha([["A"], ["B"]]) is None and pairwise_agreement([]) is None


def synthetic_votes() -> list[dict]:
    """3 raters on 20 prompts: all say A looks better on prompts 0-11, about the same on 12-13, B on 14-19;
    A is always on the left, so the left wins 12 of the 18 decided prompts. Rater r2 fails 1 of 2 checks."""
    votes = []
    for prompt in range(20):
        quality = "A" if prompt < 12 else "same" if prompt < 14 else "B"
        for rater in ("r0", "r1", "r2"):
            side = {"A": "left", "same": "same", "B": "right"}[quality]
            votes.append(
                {
                    "prompt_index": prompt,
                    "rater": rater,
                    "kind": "pair",
                    "left_shown": "A",
                    "quality_side": side,
                    "quality_choice": quality,
                    "text_side": "left",
                    "text_choice": "A",
                }
            )
    for rater, choice in (("r0", "intact"), ("r2", "intact"), ("r2", "degraded")):
        votes.append({"prompt_index": 0, "rater": rater, "kind": "check", "quality_choice": choice})
    return votes


STUDY_ROW = {"name": "demo vs baseline", "a_dir": "a", "b_dir": "b", "prompts_file": "p.txt", "prompts": 20}


def test_the_report_of_a_synthetic_vote_table_has_the_known_numbers(tmp_path):
    report = build_report(STUDY_ROW, synthetic_votes(), resamples=2000, seed=0)
    quality = report["questions"]["quality"]
    assert (quality["A"]["share"], quality["same"]["share"], quality["B"]["share"]) == (0.6, 0.1, 0.3)
    assert quality["A"]["count"] == 36 and quality["votes"] == 60
    assert quality["A"]["low"] < 0.6 < quality["A"]["high"]
    assert quality["agreement"] == {"alpha": 1.0, "pairwise": 1.0, "prompts_with_two_or_more_votes": 20}
    assert quality["position"]["left"]["share"] == pytest.approx(12 / 18)
    text = report["questions"]["text"]
    assert (
        text["A"] == {"count": 60, "share": 1.0, "low": 1.0, "high": 1.0}
        and text["agreement"]["alpha"] is None
    )
    assert report["votes"] == {"pairs": 60, "raters": 3, "prompts_voted": 20, "votes_per_prompt": [3, 3]}
    checks = report["attention_checks"]
    assert checks["raters_failing"] == {"r2": {"checks": 2, "failed": 1}} and checks["answered"] == 3
    table = markdown(report)
    assert "| which looks better | 60% [" in table and "raters who failed one: r2 (1/2)" in table
    assert "67% [" in table and "(36 vs 18) |" in table  # the left won 36 votes, the right 18
    excluded = build_report(STUDY_ROW, synthetic_votes(), exclude_failed=True)
    assert excluded["excluded_raters"] == ["r2"] and excluded["votes"]["pairs"] == 40
    paths = write_report(tmp_path, report)
    assert [p.name for p in paths] == ["report.json", "report.md", "report.png"]
    assert json.loads(paths[0].read_text())["questions"]["quality"]["A"]["share"] == 0.6
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_twenty_concurrent_raters_cast_200_votes_none_lost_or_doubled(study, tmp_path):
    store = VoteStore(tmp_path / "votes.sqlite")
    app = create_app(study, store, check_share=0.0, seed=0)

    def rater(seed: int) -> tuple[str, list[dict], dict]:
        simulated = SimulatedRater(base_url, random_judge, seed=seed)
        try:
            votes = simulated.rate(max_votes=10)
            replay = simulated.vote(votes[0]["pair"], votes[0]["quality"], votes[0]["text"])  # a retry
            return simulated.rater, votes, replay
        finally:
            simulated.close()

    with serving(app, "127.0.0.1", free_port()) as base_url, ThreadPoolExecutor(20) as pool:
        results = list(pool.map(rater, range(20)))
    acknowledged = {vote["pair"]: rater for rater, votes, _ in results for vote in votes}
    assert len(acknowledged) == 200 and all(not v["duplicate"] for _, votes, _ in results for v in votes)
    assert all(replay == {"recorded": True, "duplicate": True} for _, _, replay in results)
    _, stored = read_study_votes(store.path)
    assert len(stored) == 200 and {v["assignment_id"]: v["rater"] for v in stored} == acknowledged
    sent = {(v["pair"], v["quality"], v["text"]) for _, votes, _ in results for v in votes}
    assert {(v["assignment_id"], v["quality_side"], v["text_side"]) for v in stored} == sent
    per_prompt = np.bincount([v["prompt_index"] for v in stored], minlength=PROMPTS)
    assert (per_prompt == 20).all()  # every rater rated every prompt once


def test_a_server_killed_mid_vote_keeps_every_recorded_vote_whole(folders, tmp_path):
    database, port = tmp_path / "votes.sqlite", free_port()
    command = [sys.executable, "-m", "cascade", "rate", *map(str, folders[:2]), "--prompts", str(folders[2])]
    command += ["--db", str(database), "--port", str(port), "--attention-checks", "0", "--seed", "0"]

    def start() -> subprocess.Popen:
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(600):
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                return server
            except httpx.TransportError:
                assert server.poll() is None, server.stderr.read().decode()
                time.sleep(0.1)
        raise AssertionError("the server did not start")

    server = start()
    rater = SimulatedRater(f"http://127.0.0.1:{port}", random_judge, seed=0)
    acknowledged, stop = [], threading.Event()

    def vote_until_killed() -> None:
        try:
            while not stop.is_set():
                acknowledged.extend(rater.rate(max_votes=1))
        except httpx.TransportError:
            pass

    voter = threading.Thread(target=vote_until_killed)
    voter.start()
    deadline = time.monotonic() + 120
    while len(acknowledged) < 5 and voter.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(acknowledged) >= 5, "the rater stopped voting before the server was killed"
    server.send_signal(signal.SIGKILL)  # while votes are in flight
    server.wait()
    stop.set()
    voter.join()
    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = {
            row[0]: row[1:] for row in db.execute("SELECT assignment_id, quality_side, text_side FROM votes")
        }
    assert {v["pair"]: (v["quality"], v["text"]) for v in acknowledged}.items() <= stored.items()
    assert len(acknowledged) <= len(stored) <= len(acknowledged) + 1  # at most the vote in flight is unknown
    server = start()  # the same rater resumes where the database says they stopped
    try:
        rated = httpx.get(f"http://127.0.0.1:{port}/api/next", params={"rater": rater.rater}).json()["rated"]
        assert rated == len(stored)
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait()
        rater.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{a}"], "give two folders, A_DIR and B_DIR (or `report`), got 1"),
        (["{a}", "{b}"], "--prompts FILE is required"),
        (
            ["{a}", "{b}", "--prompts", "{p}", "--attention-checks", "0.9"],
            "--attention-checks must be in [0, 0.5]",
        ),
        (
            ["{a}", "{b}", "--prompts", "{p}", "--exclude-failed"],
            "--exclude-failed do(es) not apply to serving",
        ),
        (["report", "--db", "{tmp}/missing.sqlite"], "--db '{tmp}/missing.sqlite' does not exist"),
        (["report", "--prompts", "{p}"], "--prompts do(es) not apply to cascade rate report"),
        (["{a}", "{a}", "--prompts", "{p}"], "A_DIR and B_DIR are the same folder"),
        (["{a}", "{b}", "--prompts", "{p}", "--check-kinds", "blur"], "--check-kinds: unknown kind(s) blur"),
    ],
)
def test_the_command_answers_bad_input_in_one_line(folders, tmp_path, capsys, args, message):
    values = {"a": folders[0], "b": folders[1], "p": folders[2], "tmp": tmp_path}
    assert main(["rate", *[arg.format(**values) for arg in args]]) == 2
    error = capsys.readouterr().err
    assert message.format(**values) in error and error.count("\n") == 1


def test_the_report_command_writes_json_markdown_and_chart(study, tmp_path, capsys):
    store = VoteStore(tmp_path / "study.sqlite")
    study_id = store.register_study(study)
    for _ in range(2):
        rater, rng = store.add_rater(), random.Random(0)
        while (assignment := store.next_assignment(study_id, rater, rng, 0.1)) is not None:
            store.record_vote(study_id, rater, assignment.id, rng.choice(["left", "right"]), "same")
    assert main(["rate", "report", "--db", str(store.path), "--resamples", "200"]) == 0
    out = capsys.readouterr().out
    assert "| which looks better |" in out and "wrote" in out
    report = json.loads((tmp_path / "study-report" / "report.json").read_text())
    assert report["votes"]["pairs"] == 2 * PROMPTS and report["study"]["name"] == "a vs b"
    assert report["interval"] == "95% percentile bootstrap over prompts (200 resamples, seed 0)"
    assert (tmp_path / "study-report" / "report.png").stat().st_size > 1000


def test_several_studies_share_one_database_and_the_report_picks_one(folders, study, tmp_path, capsys):
    store = VoteStore(tmp_path / "study.sqlite")
    swapped = load_study(folders[1], folders[0], folders[2])  # the same videos, B as model A
    assert swapped.name == "b vs a"
    for chosen, side in ((study, "left"), (swapped, "right")):
        study_id, rater = store.register_study(chosen), store.add_rater()
        for _ in range(3):
            assignment = store.next_assignment(study_id, rater, random.Random(0), 0.0)
            store.record_vote(study_id, rater, assignment.id, side, side)
    with pytest.raises(ValueError, match=r"has 2 studies \['a vs b', 'b vs a'\]; choose one with --study"):
        read_study_votes(store.path)
    row, votes = read_study_votes(store.path, "b vs a")
    assert row["a_dir"] == str(folders[1].resolve()) and len(votes) == 3
    assert {vote["quality_side"] for vote in votes} == {"right"}  # none of the other study's votes
    output = tmp_path / "b-report"
    assert main(["rate", "report", "--db", str(store.path), "--study", "b vs a", "-o", str(output)]) == 0
    assert json.loads((output / "report.json").read_text())["votes"]["pairs"] == 3
    assert main(["rate", "report", "--db", str(store.path), "--study", "c vs d"]) == 2
    assert "--study 'c vs d' is not in --db" in capsys.readouterr().err


def test_undoing_sides():
    assert [undo_sides(s, "B") for s in ("left", "right", "same")] == ["B", "A", "same"]
    assert undo_sides("right", "intact") == "degraded"
    with pytest.raises(ValueError, match="`left_shown` must be one of"):
        undo_sides("left", "C")


def test_the_page_never_names_a_model_or_a_file(study, tmp_path):
    app = create_app(study, VoteStore(tmp_path / "votes.sqlite"), check_share=0.0, seed=0)
    with serving(app, "127.0.0.1", free_port()) as base_url, httpx.Client(base_url=base_url) as client:
        rater = client.post("/api/raters").json()["rater"]
        pair = client.get("/api/next", params={"rater": rater}).json()
        text = json.dumps(pair) + client.get("/").text
        assert (
            "a/" not in json.dumps(pair) and str(study.a_dir) not in text and "0000" not in json.dumps(pair)
        )
        left = client.get(pair["left"])
        assert left.headers["content-type"] == "video/mp4" and "filename" not in left.headers.get(
            "content-disposition", ""
        )
        shown = hashlib.sha256(left.content).hexdigest()
        assert shown in {study.items[i].a.sha256 for i in range(PROMPTS)} | {
            study.items[i].b.sha256 for i in range(PROMPTS)
        }
        missing = client.post(
            "/api/votes", json={"rater": rater, "pair": "nope", "quality": "left", "text": "left"}
        )
        assert missing.status_code == 404 and "was never served" in missing.json()["error"]
        bad = client.post(
            "/api/votes", json={"rater": rater, "pair": pair["pair"], "quality": "up", "text": "left"}
        )
        assert bad.status_code == 400 and "`quality` must be one of" in bad.json()["error"]


def test_videos_stored_as_npz_reach_the_page_as_mp4(copied, tmp_path):
    a, b, prompts = copied
    for path in sorted(b.glob("*.mp4")):  # model B's videos as `cascade eval --format npz` writes them
        write_video(read_video(path), path.with_suffix(".npz"), fps=8)
        path.unlink()
    app = create_app(load_study(a, b, prompts), VoteStore(tmp_path / "votes.sqlite"), check_share=0.0, seed=0)
    with serving(app, "127.0.0.1", free_port()) as base_url, httpx.Client(base_url=base_url) as client:
        rater = client.post("/api/raters").json()["rater"]
        pair = client.get("/api/next", params={"rater": rater}).json()
        for side in ("left", "right"):
            response = client.get(pair[side])
            assert response.headers["content-type"] == "video/mp4"
            frames = iio.imread(response.content, index=None, extension=".mp4")  # (F, H, W, 3)
            assert frames.shape == (8, 16, 16, 3)


def test_shapes_judges_pass_the_checks_and_prefer_the_right_direction(study, tmp_path):
    """Raters who judge with the shapes-world analysis, without errors: model B's videos move the wrong way, so
    A matches the text better every time; both are clean renders, so mostly neither looks better; and a render is
    always preferred to its spoiled copy, so no attention check fails."""
    store = VoteStore(tmp_path / "votes.sqlite")
    app = create_app(study, store, check_share=0.3, seed=1)
    with serving(app, "127.0.0.1", free_port()) as base_url:
        for seed in range(2):
            rater = SimulatedRater(base_url, ShapesJudge(error_rate=0.0), seed=seed)
            rater.rate()
            rater.close()
    report = build_report(*read_study_votes(store.path), resamples=200)
    assert report["questions"]["text"]["A"]["share"] == 1.0
    assert report["questions"]["quality"]["same"]["share"] >= 0.8  # renders differ only in their paths
    checks = report["attention_checks"]
    assert checks["answered"] > 0 and checks["failed"] == 0


def test_look_score_ranks_a_render_above_its_spoiled_copies():
    clip = render_clip(ShapesWorld(0)[0], 8, 32, 32)  # (F, H, W, 3) in [0, 1]
    frames = (clip * 255).round().astype(np.uint8)
    render = look_score(clip)
    assert render > 0.5
    for kind in ("shuffled", "noise"):
        assert look_score(spoil(frames, kind, seed=0) / 255) < render / 2
    judge = ShapesJudge(error_rate=0.0)
    caption = ShapesWorld(0)[0].caption
    noisy = spoil(frames, "noise", 0) / 255  # the noise leaves colour, shape and direction readable
    assert judge(caption, lambda: noisy, lambda: clip, random.Random(0)) == ("right", "same")
    with pytest.raises(ValueError, match=r"`error_rate` must be a number in \[0.0, 1.0\], got 2"):
        ShapesJudge(error_rate=2)
