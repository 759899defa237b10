"""Simulated raters: HTTP clients that rate a study through the page's own API as a person would (the next
pair, its two videos, a vote), so the whole path from the server to the report runs without people. The
README's demo study votes with :class:`ShapesJudge`; the tests' concurrent raters with :func:`random_judge`.

A judge is called as ``judge(prompt, left, right, rng)``: ``left`` and ``right`` load the pair's videos (float
frames ``(F, H, W, 3)`` in [0, 1]) only if the judge looks at them; it returns the sides chosen for "which
looks better" and "which matches the text better" (``left``, ``right`` or ``same``).
"""

import random
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import imageio.v3 as iio
import numpy as np

from cascade.data import analyze_video, parse_caption
from cascade.utils.checks import check_int, check_number

from .store import SIDES

Judge = Callable[[str, Callable[[], np.ndarray], Callable[[], np.ndarray], random.Random], tuple[str, str]]


def random_judge(prompt: str, left, right, rng: random.Random) -> tuple[str, str]:
    """Answers both questions at random, without looking."""
    return rng.choice(SIDES), rng.choice(SIDES)


def look_score(
    frames: np.ndarray, max_area: float = 0.3, wobble_scale: float = 0.05, grain_scale: float = 0.05
) -> float:
    """How good ``frames`` ``(F, H, W, 3)`` in [0, 1] look as a clip of the shapes world, in [0, 1]: one clear
    object, moving steadily, on a clean background. The product of

    - *clear*: the share of frames where the shapes-world analysis finds a shape of the clip's majority colour
      and shape covering at most ``max_area`` of the frame (a larger one is no clear object: noise, a smear);
    - *steady*: ``1 / (1 + w / wobble_scale)``, ``w`` the RMS distance of the centroids from their
      least-squares straight path at constant speed, in frame sizes (0 for a render; shuffled frames jump);
    - *clean*: ``1 / (1 + g / grain_scale)``, ``g`` the mean absolute difference between neighbouring pixels
      (about 0.01 for the demo's videos, 0.28 under the attention checks' noise).
    """
    analysis = analyze_video(frames)
    found = ~np.isnan(analysis.centroids[:, 0])
    if found.sum() < 2:
        return 0.0
    clear = np.mean(
        [
            frame.shape is not None
            and frame.area <= max_area
            and (frame.color, frame.shape) == (analysis.color, analysis.shape)
            for frame in analysis.frames
        ]
    )
    times = np.arange(len(frames))[found]
    centroids = analysis.centroids[found]  # (n, 2)
    design = np.stack([np.ones(len(times)), times], axis=1)  # (n, 2)
    fit, *_ = np.linalg.lstsq(design, centroids, rcond=None)  # (2, 2)
    wobble = np.sqrt(((centroids - design @ fit) ** 2).sum(axis=1).mean())
    grain = (np.abs(np.diff(frames, axis=1)).mean() + np.abs(np.diff(frames, axis=2)).mean()) / 2
    return float(clear / (1 + wobble / wobble_scale) / (1 + grain / grain_scale))


def text_matches(frames: np.ndarray, prompt: str) -> int:
    """How many of the prompt's colour, shape and direction the analysis reads in ``frames`` (0 to 3)."""
    target, analysis = parse_caption(prompt), analyze_video(frames)
    return sum(
        getattr(analysis, attribute) == target[attribute] for attribute in ("color", "shape", "direction")
    )


@dataclass(frozen=True)
class ShapesJudge:
    """A rater who judges shapes-world videos with the world's own analysis and errs at a stated rate.

    Which looks better: the video with the higher :func:`look_score`, "about the same" within ``tie_margin``.
    Which matches the text: the video in which the analysis reads more of the prompt's colour, shape and
    direction (:func:`text_matches`), "about the same" on a tie. Then, for each question on its own, with
    probability ``error_rate`` the answer is replaced by one of the three drawn uniformly (so an answer is
    wrong with probability about ``2/3 * error_rate``).
    """

    error_rate: float = 0.1
    tie_margin: float = 0.05

    def __post_init__(self):
        check_number("error_rate", self.error_rate, minimum=0.0, maximum=1.0)
        check_number("tie_margin", self.tie_margin, minimum=0.0)

    def __call__(self, prompt: str, left, right, rng: random.Random) -> tuple[str, str]:
        left_frames, right_frames = left(), right()

        def side(difference: float, margin: float) -> str:
            return "same" if abs(difference) <= margin else "left" if difference > 0 else "right"

        quality = side(look_score(left_frames) - look_score(right_frames), self.tie_margin)
        text = side(text_matches(left_frames, prompt) - text_matches(right_frames, prompt), 0)
        return tuple(
            rng.choice(SIDES) if rng.random() < self.error_rate else answer for answer in (quality, text)
        )


class SimulatedRater:
    """One rater at ``base_url`` (``http://host:port``): a new anonymous id, then pairs until done or
    ``max_votes``, each judged by ``judge`` with a ``random.Random(seed)``. One connection at a time."""

    def __init__(self, base_url: str, judge: Judge, seed: int = 0, timeout: float = 60.0):
        self.client = httpx.Client(base_url=base_url, timeout=timeout, limits=httpx.Limits(max_connections=1))
        self.judge, self.rng = judge, random.Random(check_int("seed", seed, minimum=0))
        self.rater = self._json("POST", "/api/raters")["rater"]

    def _json(self, method: str, path: str, **kwargs) -> dict:
        response = self.client.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json()

    def _frames(self, path: str) -> Callable[[], np.ndarray]:
        def load() -> np.ndarray:
            response = self.client.get(path)
            response.raise_for_status()
            return iio.imread(response.content, index=None, extension=".mp4") / 255.0  # (F, H, W, 3)

        return load

    def vote(self, pair: str, quality: str, text: str) -> dict:
        """Sends one vote; the server's answer (``{"recorded", "duplicate"}``)."""
        body = {"rater": self.rater, "pair": pair, "quality": quality, "text": text}
        return self._json("POST", "/api/votes", json=body)

    def rate(self, max_votes: int | None = None) -> list[dict]:
        """Rates pairs until the study has none left for this rater or ``max_votes`` were cast; returns each
        vote sent (``pair``, ``quality``, ``text``) with the server's answer."""
        check_int("max_votes", max_votes, minimum=1, optional=True)
        votes = []
        while max_votes is None or len(votes) < max_votes:
            pair = self._json("GET", "/api/next", params={"rater": self.rater})
            if pair.get("done"):
                break
            quality, text = self.judge(
                pair["prompt"], self._frames(pair["left"]), self._frames(pair["right"]), self.rng
            )
            votes.append(
                {
                    "pair": pair["pair"],
                    "quality": quality,
                    "text": text,
                    **self.vote(pair["pair"], quality, text),
                }
            )
        return votes

    def close(self) -> None:
        self.client.close()
