"""Where a study's votes live: one SQLite file (the standard library's ``sqlite3``) in WAL mode, any number of
studies in it.

Every vote is one row, written in one transaction with everything needed to read it on its own: the study, the
prompt, both videos' paths and hashes, the model shown on the left, the sides clicked and the answers with the
sides undone, the rater and the time. SQLite's journal makes a transaction all or nothing, so a crash or
``kill -9`` of the server loses at most the vote in flight and never leaves half of one; ``synchronous=FULL``
makes a vote durable once the rater's browser has been told it was recorded.

A vote answers an *assignment*: a pair the server served to one rater, under an id that cannot be guessed and
says nothing of the models. A vote for an id never served (or served to another rater) is refused; the same
vote sent twice (a retry after a lost answer) is recorded once; different answers to a pair already answered
are refused. Assignments are drawn in a transaction too (:meth:`VoteStore.next_assignment`): the rater's open
pair again if they have one (a reload resumes), else, among the prompts the rater has not rated, one that has
been served least so far, so every prompt gets votes before any prompt gets many. A share of assignments are
attention checks: one video of a prompt against a degraded copy of itself (:mod:`cascade.rating.checks`).
"""

import contextlib
import random
import secrets
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cascade.utils.checks import check_choice, check_number

from .checks import CHECK_KINDS, check_kinds_argument
from .study import MODELS, Study

SIDES = ("left", "right", "same")
CHECK_SIDES = ("intact", "degraded")
MAX_CHECK_SHARE = 0.5

SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    a_dir TEXT NOT NULL,
    b_dir TEXT NOT NULL,
    prompts_file TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    study_id INTEGER NOT NULL REFERENCES studies(id),
    prompt_index INTEGER NOT NULL,
    prompt TEXT NOT NULL,
    a_path TEXT NOT NULL,
    a_sha256 TEXT NOT NULL,
    b_path TEXT NOT NULL,
    b_sha256 TEXT NOT NULL,
    PRIMARY KEY (study_id, prompt_index)
);
CREATE TABLE IF NOT EXISTS raters (id TEXT PRIMARY KEY, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS assignments (
    id TEXT PRIMARY KEY,
    study_id INTEGER NOT NULL REFERENCES studies(id),
    rater TEXT NOT NULL REFERENCES raters(id),
    prompt_index INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('pair', 'check')),
    left_shown TEXT NOT NULL CHECK (left_shown IN ('A', 'B', 'intact', 'degraded')),
    check_model TEXT CHECK (check_model IN ('A', 'B')),
    check_kind TEXT,
    served_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS assignments_by_rater ON assignments (study_id, rater);
CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY,
    assignment_id TEXT NOT NULL UNIQUE REFERENCES assignments(id),
    study_id INTEGER NOT NULL REFERENCES studies(id),
    prompt_index INTEGER NOT NULL,
    prompt TEXT NOT NULL,
    a_path TEXT NOT NULL,
    a_sha256 TEXT NOT NULL,
    b_path TEXT NOT NULL,
    b_sha256 TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('pair', 'check')),
    left_shown TEXT NOT NULL,
    check_model TEXT,
    check_kind TEXT,
    quality_side TEXT NOT NULL CHECK (quality_side IN ('left', 'right', 'same')),
    text_side TEXT NOT NULL CHECK (text_side IN ('left', 'right', 'same')),
    quality_choice TEXT NOT NULL,
    text_choice TEXT NOT NULL,
    rater TEXT NOT NULL REFERENCES raters(id),
    created_at TEXT NOT NULL
);
"""


class UnknownPairError(ValueError):
    """A vote for a pair that was never served to this rater in this study (the server answers 404)."""


class UnknownRaterError(ValueError):
    """A rater id the database never gave out (the server answers 404; the page asks for a new one)."""


class AnsweredPairError(ValueError):
    """Different answers for a pair that already has a vote (the server answers 409)."""


@dataclass(frozen=True)
class Assignment:
    """A pair served to a rater: for a ``"pair"``, ``left_shown`` is the model on the left; for a ``"check"``,
    ``"intact"`` or ``"degraded"``, the degraded copy being ``check_model``'s video spoiled by ``check_kind``."""

    id: str
    prompt_index: int
    prompt: str
    kind: str
    left_shown: str
    check_model: str | None = None
    check_kind: str | None = None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def undo_sides(side: str, left_shown: str) -> str:
    """What the rater chose once the random sides are undone: ``side`` (``left``/``right``/``same``) of a pair
    with ``left_shown`` on the left, as a model (``A``/``B``), or for a check ``intact``/``degraded``;
    ``same`` stays ``same``."""
    check_choice("side", side, SIDES)
    pairs = {"A": "B", "B": "A", "intact": "degraded", "degraded": "intact"}
    check_choice("left_shown", left_shown, list(pairs))
    return "same" if side == "same" else left_shown if side == "left" else pairs[left_shown]


def open_database(path, readonly: bool = False) -> sqlite3.Connection:
    """A connection to the SQLite file ``path`` in autocommit mode (transactions are explicit); ``ValueError``
    naming ``--db`` when it is not a readable SQLite database (or, ``readonly``, does not exist)."""
    path = Path(path)
    if readonly and not path.is_file():
        raise ValueError(f"--db {str(path)!r} does not exist")
    if not readonly and not path.parent.is_dir():
        raise ValueError(f"--db {str(path)!r}: its folder does not exist")
    try:
        uri = f"{path.resolve().as_uri()}?mode={'ro' if readonly else 'rwc'}"
        connection = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA foreign_keys = ON")
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()  # reads the header: is it SQLite?
    except sqlite3.DatabaseError as error:
        raise ValueError(f"--db {str(path)!r} is not a readable SQLite database: {error}") from None
    return connection


class VoteStore:
    """The votes of studies in the SQLite file ``path`` (created with its tables if missing). Each method opens
    its own connection, so one store serves many threads; SQLite serialises the writers."""

    def __init__(self, path):
        self.path = Path(path)
        with contextlib.closing(open_database(self.path)) as connection:
            try:
                connection.execute("PRAGMA journal_mode = WAL")
                connection.executescript(SCHEMA)
            except sqlite3.DatabaseError as error:
                raise ValueError(
                    f"--db {str(self.path)!r} is not a readable SQLite database: {error}"
                ) from None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A connection inside ``BEGIN IMMEDIATE`` (this writer holds the lock from the start, so what it reads
        stays true until it commits), committed on success, rolled back on any error."""
        with contextlib.closing(open_database(self.path)) as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    def register_study(self, study: Study) -> int:
        """The id of ``study`` in the database, adding it if new; ``ValueError`` if a study of that name was
        made with other videos or prompts (votes are never mixed across studies)."""
        with self._transaction() as db:
            row = db.execute("SELECT id, fingerprint FROM studies WHERE name = ?", (study.name,)).fetchone()
            if row is not None:
                if row["fingerprint"] != study.fingerprint:
                    raise ValueError(
                        f"--db {str(self.path)!r} already has a study named {study.name!r} with other videos or "
                        "prompts; give this one another --study name"
                    )
                return row["id"]
            cursor = db.execute(
                "INSERT INTO studies (name, fingerprint, a_dir, b_dir, prompts_file, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    study.name,
                    study.fingerprint,
                    str(study.a_dir),
                    str(study.b_dir),
                    str(study.prompts_file),
                    _now(),
                ),
            )
            db.executemany(
                "INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        cursor.lastrowid,
                        i.index,
                        i.prompt,
                        str(i.a.path),
                        i.a.sha256,
                        str(i.b.path),
                        i.b.sha256,
                    )
                    for i in study.items
                ],
            )
            return cursor.lastrowid

    def add_rater(self) -> str:
        """A new anonymous rater id."""
        rater = secrets.token_hex(16)
        with self._transaction() as db:
            db.execute("INSERT INTO raters VALUES (?, ?)", (rater, _now()))
        return rater

    def assignment(self, study_id: int, assignment_id: str) -> Assignment | None:
        """The assignment ``assignment_id`` of study ``study_id``, or ``None``."""
        with contextlib.closing(open_database(self.path)) as db:
            row = db.execute(
                "SELECT a.*, i.prompt FROM assignments a JOIN items i USING (study_id, prompt_index) "
                "WHERE a.id = ? AND a.study_id = ?",
                (str(assignment_id), study_id),
            ).fetchone()
        return None if row is None else _assignment(row)

    def next_assignment(
        self,
        study_id: int,
        rater: str,
        rng: random.Random,
        check_share: float,
        check_kinds: tuple[str, ...] = CHECK_KINDS,
    ) -> Assignment | None:
        """What ``rater`` rates next in study ``study_id``: their open assignment if any; else, with
        probability ``check_share``, an attention check (its spoiler drawn from ``check_kinds``); else a pair of a prompt they have not rated, one that
        has been served least so far (ties drawn with ``rng``), its sides drawn with ``rng``. ``None`` when the
        rater has rated every prompt."""
        check_number("check_share", check_share, minimum=0.0, maximum=MAX_CHECK_SHARE)
        check_kinds = check_kinds_argument("check_kinds", check_kinds)
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM raters WHERE id = ?", (rater,)).fetchone() is None:
                raise UnknownRaterError(
                    f"rater {rater!r} is unknown here; reload the page to get a new rater id"
                )
            open_row = db.execute(
                "SELECT a.*, i.prompt FROM assignments a JOIN items i USING (study_id, prompt_index) "
                "WHERE a.study_id = ? AND a.rater = ? AND a.id NOT IN (SELECT assignment_id FROM votes) "
                "ORDER BY a.served_at LIMIT 1",
                (study_id, rater),
            ).fetchone()
            if open_row is not None:
                return _assignment(open_row)
            loads = db.execute(
                "SELECT i.prompt_index, i.prompt, "
                "(SELECT count(*) FROM assignments a WHERE a.study_id = i.study_id "
                " AND a.prompt_index = i.prompt_index AND a.kind = 'pair') AS load "
                "FROM items i WHERE i.study_id = ? AND i.prompt_index NOT IN "
                "(SELECT prompt_index FROM assignments WHERE study_id = ? AND rater = ? AND kind = 'pair') "
                "ORDER BY i.prompt_index",
                (study_id, study_id, rater),
            ).fetchall()
            if not loads:
                return None
            if rng.random() < check_share:
                items = db.execute(
                    "SELECT prompt_index, prompt FROM items WHERE study_id = ?", (study_id,)
                ).fetchall()
                item = rng.choice(items)
                assignment = Assignment(
                    secrets.token_urlsafe(16),
                    item["prompt_index"],
                    item["prompt"],
                    "check",
                    rng.choice(CHECK_SIDES),
                    rng.choice(MODELS),
                    rng.choice(check_kinds),
                )
            else:
                fewest = min(row["load"] for row in loads)
                item = rng.choice([row for row in loads if row["load"] == fewest])
                assignment = Assignment(
                    secrets.token_urlsafe(16),
                    item["prompt_index"],
                    item["prompt"],
                    "pair",
                    rng.choice(MODELS),
                )
            db.execute(
                "INSERT INTO assignments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    assignment.id,
                    study_id,
                    rater,
                    assignment.prompt_index,
                    assignment.kind,
                    assignment.left_shown,
                    assignment.check_model,
                    assignment.check_kind,
                    _now(),
                ),
            )
            return assignment

    def record_vote(
        self, study_id: int, rater: str, assignment_id: str, quality_side: str, text_side: str
    ) -> tuple[dict, bool]:
        """Records ``rater``'s answers (``left``, ``right`` or ``same``) to the two questions for the pair
        ``assignment_id``, in one transaction. Returns the vote and whether it had been recorded before (the
        same answers sent again); :class:`UnknownPairError` for a pair never served to ``rater`` in this study,
        :class:`AnsweredPairError` for other answers to a pair already answered."""
        check_choice("quality", quality_side, SIDES)
        check_choice("text", text_side, SIDES)
        with self._transaction() as db:
            served = db.execute(
                "SELECT a.*, i.prompt, i.a_path, i.a_sha256, i.b_path, i.b_sha256 "
                "FROM assignments a JOIN items i USING (study_id, prompt_index) WHERE a.id = ? AND a.study_id = ?",
                (str(assignment_id), study_id),
            ).fetchone()
            if served is None or served["rater"] != rater:
                raise UnknownPairError(
                    f"pair {assignment_id!r} was never served to rater {rater!r} in this study"
                )
            existing = db.execute("SELECT * FROM votes WHERE assignment_id = ?", (assignment_id,)).fetchone()
            if existing is not None:
                if (existing["quality_side"], existing["text_side"]) != (quality_side, text_side):
                    raise AnsweredPairError(f"pair {assignment_id!r} was already answered with other answers")
                return dict(existing), True
            vote = {
                "assignment_id": assignment_id,
                "study_id": study_id,
                **{
                    key: served[key]
                    for key in ("prompt_index", "prompt", "a_path", "a_sha256", "b_path", "b_sha256")
                },
                **{key: served[key] for key in ("kind", "left_shown", "check_model", "check_kind")},
                "quality_side": quality_side,
                "text_side": text_side,
                "quality_choice": undo_sides(quality_side, served["left_shown"]),
                "text_choice": undo_sides(text_side, served["left_shown"]),
                "rater": rater,
                "created_at": _now(),
            }
            columns = ", ".join(vote)
            db.execute(
                f"INSERT INTO votes ({columns}) VALUES ({', '.join('?' * len(vote))})", tuple(vote.values())
            )
            return vote, False

    def progress(self, study_id: int, rater: str) -> tuple[int, int]:
        """``(prompts rater has rated, prompts of the study)``."""
        with contextlib.closing(open_database(self.path)) as db:
            done = db.execute(
                "SELECT count(*) FROM votes WHERE study_id = ? AND rater = ? AND kind = 'pair'",
                (study_id, rater),
            ).fetchone()[0]
            total = db.execute("SELECT count(*) FROM items WHERE study_id = ?", (study_id,)).fetchone()[0]
        return done, total


def _assignment(row: sqlite3.Row) -> Assignment:
    return Assignment(
        row["id"],
        row["prompt_index"],
        row["prompt"],
        row["kind"],
        row["left_shown"],
        row["check_model"],
        row["check_kind"],
    )


def read_study_votes(path, study: str | None = None) -> tuple[dict, list[dict]]:
    """The study named ``study`` in the database ``path`` (``None``: its only study) and all its votes, read
    without writing; ``ValueError`` naming ``--db`` or ``--study`` when there is none such."""
    with contextlib.closing(open_database(path, readonly=True)) as db:
        try:
            studies = [dict(row) for row in db.execute("SELECT * FROM studies ORDER BY id")]
        except sqlite3.DatabaseError as error:
            raise ValueError(f"--db {str(path)!r} is not a study database of cascade rate: {error}") from None
        names = [row["name"] for row in studies]
        if study is None and len(studies) != 1:
            raise ValueError(
                f"--db {str(path)!r} has {len(studies)} studies {names}; choose one with --study"
                if studies
                else f"--db {str(path)!r} has no study yet"
            )
        chosen = studies[0] if study is None else next((row for row in studies if row["name"] == study), None)
        if chosen is None:
            raise ValueError(f"--study {study!r} is not in --db {str(path)!r}; it has {names}")
        chosen["prompts"] = db.execute(
            "SELECT count(*) FROM items WHERE study_id = ?", (chosen["id"],)
        ).fetchone()[0]
        votes = [
            dict(row)
            for row in db.execute("SELECT * FROM votes WHERE study_id = ? ORDER BY id", (chosen["id"],))
        ]
    return chosen, votes
