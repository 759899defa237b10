"""``cascade rate report``: what a study's votes say, as JSON, a markdown table and a bar chart.

For each question ("which looks better", "which matches the text better"): A wins, about the same and B wins
as shares of the votes with 95% percentile bootstrap intervals over prompts
(:func:`~cascade.rating.statistics.bootstrap_shares`: why not Wilson is said there), the agreement between
raters (Krippendorff's alpha and the share of agreeing pairs of votes on a prompt), and the position bias: how
often the left video won against the right one, with its interval (an unbiased study sits near 50%). Then the
attention checks: each rater's checks and failures (a failure: not choosing the intact video as the one that
looks better). ``exclude_failed`` leaves out the pair votes of every rater who failed a check.
"""

import json
from collections import defaultdict
from pathlib import Path

from cascade.utils.atomic import write_atomically
from cascade.utils.checks import check_bool

from .statistics import bootstrap_shares, krippendorff_alpha, pairwise_agreement

QUESTIONS = {"quality": "looks better", "text": "matches the text better"}
OUTCOMES = ("A", "same", "B")
LEVEL = 0.95


def _by_prompt(votes: list[dict], column: str) -> dict[int, list[str]]:
    groups = defaultdict(list)
    for vote in votes:
        groups[vote["prompt_index"]].append(vote[column])
    return dict(sorted(groups.items()))


def attention_checks(votes: list[dict]) -> dict:
    """Every rater's answered checks and failures, and the raters who failed at least one."""
    per_rater = defaultdict(lambda: {"checks": 0, "failed": 0})
    for vote in votes:
        if vote["kind"] == "check":
            per_rater[vote["rater"]]["checks"] += 1
            per_rater[vote["rater"]]["failed"] += vote["quality_choice"] != "intact"
    failing = {rater: counts for rater, counts in sorted(per_rater.items()) if counts["failed"]}
    return {
        "answered": sum(counts["checks"] for counts in per_rater.values()),
        "failed": sum(counts["failed"] for counts in per_rater.values()),
        "raters_checked": len(per_rater),
        "raters_failing": failing,
    }


def question_report(votes: list[dict], question: str, resamples: int, seed: int) -> dict:
    """Win / tie / loss of A with intervals, agreement and position bias for ``question`` over pair ``votes``."""
    choices = _by_prompt(votes, f"{question}_choice")
    report = {
        "question": f"which {QUESTIONS[question]}",
        **bootstrap_shares(list(choices.values()), OUTCOMES, resamples, seed, LEVEL),
        "votes": len(votes),
        "agreement": {
            "alpha": krippendorff_alpha(list(choices.values())),
            "pairwise": pairwise_agreement(list(choices.values())),
            "prompts_with_two_or_more_votes": sum(len(group) >= 2 for group in choices.values()),
        },
    }
    sides = {
        index: [s for s in group if s != "same"]
        for index, group in _by_prompt(votes, f"{question}_side").items()
    }
    decided = [group for group in sides.values() if group]
    report["position"] = (
        bootstrap_shares(decided, ("left", "right"), resamples, seed, LEVEL) if decided else {"left": None}
    )
    return report


def build_report(
    study: dict, votes: list[dict], exclude_failed: bool = False, resamples: int = 2000, seed: int = 0
) -> dict:
    """The report of ``study`` (a row of the database's studies, with ``prompts``) from its ``votes``."""
    check_bool("exclude_failed", exclude_failed)
    checks = attention_checks(votes)
    excluded = sorted(checks["raters_failing"]) if exclude_failed else []
    pairs = [vote for vote in votes if vote["kind"] == "pair" and vote["rater"] not in excluded]
    per_prompt = [len(group) for group in _by_prompt(pairs, "rater").values()]
    report = {
        "study": {key: study[key] for key in ("name", "a_dir", "b_dir", "prompts_file", "prompts")},
        "interval": f"{LEVEL:.0%} percentile bootstrap over prompts ({resamples} resamples, seed {seed})",
        "votes": {
            "pairs": len(pairs),
            "raters": len({vote["rater"] for vote in pairs}),
            "prompts_voted": len(per_prompt),
            "votes_per_prompt": [min(per_prompt), max(per_prompt)] if per_prompt else None,
        },
        "excluded_raters": excluded,
        "attention_checks": checks,
    }
    if pairs:
        report["questions"] = {q: question_report(pairs, q, resamples, seed) for q in QUESTIONS}
    return report


def _percent(entry: dict) -> str:
    return f"{entry['share']:.0%} [{entry['low']:.0%}, {entry['high']:.0%}]"


def markdown(report: dict) -> str:
    """The report as markdown: a table per question and lines for the counts and the attention checks."""
    study, votes, checks = report["study"], report["votes"], report["attention_checks"]
    lines = [
        f"**{study['name']}**: A = `{study['a_dir']}`, B = `{study['b_dir']}`, {study['prompts']} prompts; "
        f"{votes['pairs']} votes from {votes['raters']} raters on {votes['prompts_voted']} prompts "
        f"({'-'.join(map(str, votes['votes_per_prompt'] or [0]))} a prompt). Shares with {report['interval']}.",
        "",
    ]
    if "questions" in report:
        lines += [
            "| question | A wins | about the same | B wins | votes | agreement (alpha / pairs) | left chosen (left vs right) |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for entry in report["questions"].values():
            agreement = entry["agreement"]
            alpha = "n/a" if agreement["alpha"] is None else f"{agreement['alpha']:.2f}"
            pairwise = "n/a" if agreement["pairwise"] is None else f"{agreement['pairwise']:.0%}"
            position = entry["position"]
            left = "n/a"
            if position["left"] is not None:
                left = f"{_percent(position['left'])} ({position['left']['count']} vs {position['right']['count']})"
            lines.append(
                f"| {entry['question']} | {_percent(entry['A'])} | {_percent(entry['same'])} | {_percent(entry['B'])} "
                f"| {entry['votes']} | {alpha} / {pairwise} | {left} |"
            )
        lines.append("")
    failing = ", ".join(
        f"{rater} ({c['failed']}/{c['checks']})" for rater, c in checks["raters_failing"].items()
    )
    excluded = report["excluded_raters"]
    lines.append(
        f"Attention checks: {checks['answered']} answered by {checks['raters_checked']} raters, "
        f"{checks['failed']} failed; raters who failed one: {failing or 'none'}"
        + (f"; their votes are left out ({len(excluded)} raters)." if excluded else ".")
    )
    return "\n".join(lines) + "\n"


def write_chart(report: dict, path: Path) -> Path:
    """A bar chart (PNG) of A wins / about the same / B wins per question, with the intervals as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    questions = report.get("questions", {})
    figure, axes = plt.subplots(figsize=(6.4, 3.2), dpi=100)
    width, colors = 0.26, {"A": "#2a7ab9", "same": "#9a9a9a", "B": "#e07b39"}
    for offset, outcome in enumerate(OUTCOMES):
        entries = [entry[outcome] for entry in questions.values()]
        x = [index + (offset - 1) * width for index in range(len(entries))]
        shares = [100 * e["share"] for e in entries]
        errors = [
            [100 * (e["share"] - e["low"]) for e in entries],
            [100 * (e["high"] - e["share"]) for e in entries],
        ]
        label = {"A": "A wins", "same": "about the same", "B": "B wins"}[outcome]
        axes.bar(x, shares, width, yerr=errors, capsize=3, color=colors[outcome], label=label)
    axes.set_xticks(range(len(questions)), [entry["question"] for entry in questions.values()])
    axes.set_ylabel("% of votes")
    axes.set_ylim(0, 100)
    axes.set_title(
        f"{report['study']['name']} ({report['votes']['pairs']} votes, 95% bootstrap over prompts)",
        fontsize=9,
    )
    axes.legend(fontsize=8, frameon=False)
    figure.tight_layout()
    write_atomically(path, lambda partial: figure.savefig(partial, format="png"))
    plt.close(figure)
    return path


def write_report(folder: Path, report: dict) -> list[Path]:
    """Writes ``report.json``, ``report.md`` and ``report.png`` into ``folder`` (created if missing), each
    atomically; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path = folder / "report.json", folder / "report.md"
    write_atomically(json_path, lambda partial: partial.write_text(json.dumps(report, indent=2) + "\n"))
    write_atomically(md_path, lambda partial: partial.write_text(markdown(report)))
    return [json_path, md_path, write_chart(report, folder / "report.png")]
