"""Study results: win rates with bootstrap intervals, Fleiss' kappa, attention-check exclusion, exports.

Win rate (papers/001 Fig. 4): the share of votes in which a method was picked as the best among the
frames shown with it. For pick-the-best studies every vote shows every method, so this is picks / votes;
for pairwise studies it is wins / comparisons the method took part in. Intervals come from a bootstrap
over samples (votes on one sample are not independent: they share the same frames), percentile method.

Describe studies (papers/000 Fig. 11, Sec. F.6; papers/001 Sec. 4.5): the rate of a description source is
the share of its votes that answered "Aligned" (the paper's 87 % / 27 % for the tuned / off-the-shelf
VLLM), with the same sample bootstrap; Fleiss' kappa is over the items (sample, source) with the two
answers as categories, overall and per source; sources are compared pairwise on the samples both were
rated on (per-sample aligned shares, paired bootstrap from egoframe.evaluation.stats, Holm-corrected).
"""

from __future__ import annotations

import csv
import html
import io
import os
from collections import defaultdict
from dataclasses import asdict, dataclass, field

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from egoframe.errors import InputError
from egoframe.study import db

DESCRIBE_CHOICES = ("aligned", "not-aligned")  # vote slot 0 / 1 of a describe screen
VOTE_COLUMNS = ("study", "rater", "excluded", "position", "sample_id", "action", "is_check", "shown", "chosen",
                "check_passed", "comment", "created_at")


@dataclass
class VoteRow:
    study: str
    rater: str
    excluded: bool
    position: int
    sample_id: str
    action: str
    is_check: bool
    shown: list[str]  # methods in the order the rater saw them (A, B, ...); "target"/"input" on checks;
    # describe: [the source judged] ("check" on checks)
    chosen: str  # describe: "aligned" | "not-aligned"
    check_passed: bool | None
    comment: str
    created_at: str


@dataclass
class RaterSummary:
    label: str
    answered: int
    total: int
    checks_answered: int
    checks_failed: int
    excluded: bool


@dataclass
class MethodResult:
    method: str
    win_rate: float  # in [0, 1]; nan when the method was never shown to a kept rater
    ci_low: float
    ci_high: float
    wins: int
    shown: int


@dataclass
class StudyResults:
    study: str
    interface: str
    methods: list[MethodResult]
    raters: list[RaterSummary]
    n_votes: int  # kept, non-check votes
    fleiss_kappa: float | None
    kappa_items: int
    pairwise: dict[str, dict[str, float]] = field(default_factory=dict)  # pairwise: row beats column share
    kappa_by_method: dict[str, float | None] = field(default_factory=dict)  # describe: per source
    comparisons: list[dict] = field(default_factory=list)  # describe: source a - source b, paired, Holm
    confidence: float = 0.95
    max_failed_checks: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def load_votes(session, study_name: str, max_failed_checks: int = 0) -> tuple[db.Study, list[VoteRow], list[RaterSummary]]:
    study = session.scalar(select(db.Study).where(db.Study.name == study_name))
    if study is None:
        names = session.scalars(select(db.Study.name)).all()
        raise InputError(f"no study named {study_name!r} (studies: {', '.join(names) or 'none'})")
    raters = session.scalars(
        select(db.Rater).where(db.Rater.study_id == study.id).options(
            selectinload(db.Rater.tasks).selectinload(db.Task.options).selectinload(db.TaskOption.method),
            selectinload(db.Rater.tasks).selectinload(db.Task.vote),
            selectinload(db.Rater.tasks).selectinload(db.Task.sample),
        )
    ).all()
    rows, summaries = [], []
    describe = study.interface == "describe"
    for rater in raters:
        voted = [t for t in rater.tasks if t.vote is not None]
        failed = sum(1 for t in voted if t.is_check and not t.options[t.vote.slot].correct)
        excluded = failed > max_failed_checks
        summaries.append(RaterSummary(label=rater.label, answered=len(voted), total=len(rater.tasks),
                                      checks_answered=sum(t.is_check for t in voted), checks_failed=failed,
                                      excluded=excluded))
        for t in voted:
            chosen = t.options[t.vote.slot]
            if describe:
                shown = [t.options[0].method.name if t.options[0].method else "check"]
                chosen_name = DESCRIBE_CHOICES[t.vote.slot]
            else:
                shown = [_option_name(o) for o in t.options]
                chosen_name = _option_name(chosen)
            rows.append(VoteRow(
                study=study.name, rater=rater.label, excluded=excluded, position=t.position,
                sample_id=t.sample.sample_key, action=t.sample.action, is_check=t.is_check, shown=shown,
                chosen=chosen_name, check_passed=bool(chosen.correct) if t.is_check else None,
                comment=t.vote.comment, created_at=t.vote.created_at.isoformat(timespec="seconds"),
            ))
    return study, rows, summaries


def _option_name(option: db.TaskOption) -> str:
    if option.method is not None:
        return option.method.name
    return "target" if option.correct else "input"


def compute_results(database, study_name: str, *, max_failed_checks: int = 0, n_bootstrap: int = 2000,
                    confidence: float = 0.95, seed: int = 0) -> StudyResults:
    engine = db.make_engine(database)
    try:
        with db.sessions(engine)() as session:
            study, rows, raters = load_votes(session, study_name, max_failed_checks)
            methods = [m.name for m in study.methods]
            interface = study.interface
    finally:
        engine.dispose()
    return results_from_votes(study_name, interface, methods, rows, raters, max_failed_checks=max_failed_checks,
                              n_bootstrap=n_bootstrap, confidence=confidence, seed=seed)


def results_from_votes(study_name: str, interface: str, methods: list[str], rows: list[VoteRow],
                       raters: list[RaterSummary], *, max_failed_checks: int = 0, n_bootstrap: int = 2000,
                       confidence: float = 0.95, seed: int = 0) -> StudyResults:
    if not 0 < confidence < 1:
        raise InputError(f"confidence must be in (0, 1), got {confidence}")
    if n_bootstrap < 1:
        raise InputError(f"n_bootstrap must be >= 1, got {n_bootstrap}")
    kept = [r for r in rows if not r.is_check and not r.excluded]
    samples = sorted({r.sample_id for r in kept})
    s_index = {s: i for i, s in enumerate(samples)}
    m_index = {m: j for j, m in enumerate(methods)}
    wins = np.zeros((len(samples), len(methods)))  # (S, M)
    shown = np.zeros((len(samples), len(methods)))  # (S, M)
    for r in kept:
        i = s_index[r.sample_id]
        if interface == "describe":
            shown[i, m_index[r.shown[0]]] += 1
            wins[i, m_index[r.shown[0]]] += r.chosen == DESCRIBE_CHOICES[0]
            continue
        for m in r.shown:
            shown[i, m_index[m]] += 1
        wins[i, m_index[r.chosen]] += 1
    total_wins, total_shown = wins.sum(0), shown.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        point = total_wins / total_shown
    low = np.full(len(methods), np.nan)
    high = np.full(len(methods), np.nan)
    if samples:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, len(samples), size=(n_bootstrap, len(samples)))  # (B, S)
        with np.errstate(invalid="ignore", divide="ignore"):
            boot = wins[idx].sum(1) / shown[idx].sum(1)  # (B, M)
        from egoframe.evaluation.stats import percentile_interval

        for j in range(len(methods)):
            col = boot[:, j][~np.isnan(boot[:, j])]
            if col.size:
                low[j], high[j] = percentile_interval(col, confidence)
    method_results = [MethodResult(m, float(point[j]), float(low[j]), float(high[j]), int(total_wins[j]),
                                   int(total_shown[j])) for j, m in enumerate(methods)]
    kappa, n_items = fleiss_kappa(_kappa_table(kept, interface))
    pairwise = _pairwise_matrix(kept, methods) if interface == "pairwise" else {}
    kappa_by_method, comparisons = {}, []
    if interface == "describe":
        kappa_by_method = {m: fleiss_kappa(_kappa_table([r for r in kept if r.shown[0] == m], interface))[0]
                           for m in methods}
        comparisons = _paired_sources(wins, shown, methods, n_bootstrap, confidence, seed)
    return StudyResults(study=study_name, interface=interface, methods=method_results, raters=raters,
                        n_votes=len(kept), fleiss_kappa=kappa, kappa_items=n_items, pairwise=pairwise,
                        kappa_by_method=kappa_by_method, comparisons=comparisons,
                        confidence=confidence, max_failed_checks=max_failed_checks)


def _paired_sources(wins: np.ndarray, shown: np.ndarray, methods: list[str], resamples: int, confidence: float,
                    seed: int) -> list[dict]:
    """Every pair of description sources on the samples both were rated on: the difference of per-sample
    aligned shares, paired bootstrap interval and p from the same resamples, Holm across the pairs."""
    from egoframe.evaluation.stats import holm, paired_bootstrap

    out = []
    for a in range(len(methods)):
        for b in range(a + 1, len(methods)):
            both = (shown[:, a] > 0) & (shown[:, b] > 0)
            if both.sum() < 2:
                continue
            rate_a, rate_b = wins[both, a] / shown[both, a], wins[both, b] / shown[both, b]
            comparison = paired_bootstrap(rate_a, rate_b, confidence=confidence, resamples=resamples, seed=seed)
            out.append(dict(a=methods[a], b=methods[b], **comparison.as_dict()))
    for row, adjusted in zip(out, holm([row["p_value"] for row in out])):
        row["p_holm"] = adjusted
    return out


def _kappa_table(rows: list[VoteRow], interface: str) -> np.ndarray:
    """(items, categories) counts. An item is a sample with the set of methods shown; for pairwise studies
    the categories are "first / second of the pair" (alphabetically), since only two answers were possible."""
    items: dict[tuple, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    categories: set[str] = set()
    for r in rows:
        pair = tuple(sorted(r.shown))
        category = str(pair.index(r.chosen)) if interface == "pairwise" else r.chosen
        items[(r.sample_id, pair)][category] += 1
        categories.add(category)
    cats = sorted(categories)
    return np.array([[counts.get(c, 0) for c in cats] for counts in items.values()], dtype=float).reshape(
        len(items), len(cats))


def fleiss_kappa(table: np.ndarray) -> tuple[float | None, int]:
    """Fleiss' kappa of an (items, categories) count table; items rated once are skipped.

    Items may have different numbers of ratings (raters drop out): each item's agreement P_i uses its own
    n_i, P_bar is their mean and the chance agreement uses the pooled category shares; with equal n_i this
    is Fleiss (1971) exactly. Returns (None, n) when undefined (fewer than one usable item, or one category).
    """
    table = np.asarray(table, dtype=float)
    if table.ndim != 2 or table.size == 0:
        return None, 0
    n_i = table.sum(1)
    table = table[n_i >= 2]
    n_i = n_i[n_i >= 2]
    if len(table) == 0:
        return None, 0
    p_i = ((table**2).sum(1) - n_i) / (n_i * (n_i - 1))
    p_bar = p_i.mean()
    p_j = table.sum(0) / n_i.sum()
    p_e = float((p_j**2).sum())
    if p_e >= 1.0:
        return None, len(table)
    return float((p_bar - p_e) / (1 - p_e)), len(table)


def _pairwise_matrix(rows: list[VoteRow], methods: list[str]) -> dict[str, dict[str, float]]:
    wins: dict[tuple[str, str], int] = defaultdict(int)
    for r in rows:
        other = next(m for m in r.shown if m != r.chosen) if len(set(r.shown)) == 2 else None
        if other is not None:
            wins[(r.chosen, other)] += 1
    out: dict[str, dict[str, float]] = {}
    for a in methods:
        for b in methods:
            n = wins[(a, b)] + wins[(b, a)]
            if a != b and n:
                out.setdefault(a, {})[b] = wins[(a, b)] / n
    return out


# ------------------------------------------------------------------------------------------------ outputs


def votes_csv(rows: list[VoteRow]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(VOTE_COLUMNS)
    for r in rows:
        writer.writerow([r.study, r.rater, int(r.excluded), r.position, r.sample_id, _csv_safe(r.action),
                         int(r.is_check), " ".join(r.shown), r.chosen,
                         "" if r.check_passed is None else int(r.check_passed), _csv_safe(r.comment), r.created_at])
    return buf.getvalue()


def _csv_safe(text: str) -> str:
    # A cell starting with = + - @ runs as a formula in spreadsheet apps (CSV injection): rater text is data.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def win_rates_csv(results: list[StudyResults]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["study", "method", "win_rate", "ci_low", "ci_high", "wins", "shown", "confidence",
                     "fleiss_kappa", "votes"])
    for res in results:
        for m in res.methods:
            writer.writerow([res.study, m.method, _num(m.win_rate), _num(m.ci_low), _num(m.ci_high), m.wins,
                             m.shown, res.confidence, _num(res.fleiss_kappa), res.n_votes])
    return buf.getvalue()


def _num(x: float | None) -> str:
    return "" if x is None or np.isnan(x) else f"{x:.6f}"


def paper_table(results: list[StudyResults]) -> str:
    """Markdown table in the layout of papers/001 Table 3's "User Study" columns: one row per method, one
    column per study (dataset), win rate in % with the best in bold; intervals and agreement underneath."""
    methods: list[str] = []
    for res in results:
        methods += [m.method for m in res.methods if m.method not in methods]
    header = "| Method | " + " | ".join(
        f"{res.study} {'aligned' if res.interface == 'describe' else 'User Study'}" for res in results) + " |"
    lines = [header, "|---" * (len(results) + 1) + "|"]
    best = {}
    for res in results:
        rates = [m.win_rate for m in res.methods if not np.isnan(m.win_rate)]
        best[res.study] = max(rates) if rates else None
    for method in methods:
        cells = []
        for res in results:
            m = next((x for x in res.methods if x.method == method), None)
            if m is None or np.isnan(m.win_rate):
                cells.append("–")
                continue
            text = f"{100 * m.win_rate:.2f}"
            cells.append(f"**{text}**" if m.win_rate == best[res.study] else text)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines.append("")
    for res in results:
        kept = sum(not r.excluded for r in res.raters)
        kappa = "n/a" if res.fleiss_kappa is None else f"{res.fleiss_kappa:.3f}"
        cis = ", ".join(f"{m.method} [{100 * m.ci_low:.1f}, {100 * m.ci_high:.1f}]" for m in res.methods
                        if not np.isnan(m.ci_low))
        lines.append(f"{res.study}: {res.n_votes} votes from {kept}/{len(res.raters)} raters "
                     f"(excluded: more than {res.max_failed_checks} failed attention checks); "
                     f"Fleiss' kappa {kappa} over {res.kappa_items} items; "
                     f"{int(100 * res.confidence)}% bootstrap intervals: {cis or 'none'}")
        if res.kappa_by_method:
            lines.append(f"{res.study}: Fleiss' kappa per source: " + ", ".join(
                f"{m} {'n/a' if k is None else f'{k:.3f}'}" for m, k in res.kappa_by_method.items()))
        for c in res.comparisons:
            d = c["difference"]
            lines.append(f"{res.study}: {c['a']} - {c['b']} aligned: {100 * d['value']:+.1f} points "
                         f"[{100 * d['low']:+.1f}, {100 * d['high']:+.1f}], p {c['p_value']:.4f} "
                         f"(Holm {c['p_holm']:.4f}), n = {d['n']} samples, detectable {100 * c['detectable']:.1f}")
    return "\n".join(lines) + "\n"


def write_plot(results: StudyResults, path: str, backend: str = "auto") -> str:
    """Bar chart of win rates with interval whiskers; matplotlib when installed (or asked), else plain SVG."""
    if backend not in ("auto", "matplotlib", "svg"):
        raise InputError(f"plot backend must be auto, matplotlib or svg, got {backend!r}")
    if backend in ("auto", "matplotlib"):
        try:
            import matplotlib  # noqa: F401
        except ModuleNotFoundError:
            if backend == "matplotlib":
                raise InputError("matplotlib is not installed: pip install matplotlib, or use the svg backend") from None
        else:
            return _plot_matplotlib(results, path)
    if not path.endswith(".svg"):
        path = os.path.splitext(path)[0] + ".svg"
    with open(path, "w", encoding="utf-8") as f:
        f.write(svg_bar_chart(results))
    return path


def _plot_matplotlib(results: StudyResults, path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    names = [m.method for m in results.methods]
    rates = np.array([100 * np.nan_to_num(m.win_rate) for m in results.methods])
    low = np.array([100 * np.nan_to_num(m.win_rate - m.ci_low) for m in results.methods])
    high = np.array([100 * np.nan_to_num(m.ci_high - m.win_rate) for m in results.methods])
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 3.2))
    ax.bar(names, rates, yerr=[low, high], capsize=4, color="#4c72b0")
    describe = results.interface == "describe"
    ax.set_ylabel("Aligned (%)" if describe else "Win rate (%)")
    what = "descriptions judged aligned" if describe else "picked as the best"
    ax.set_title(f"{results.study}: {what} ({int(100 * results.confidence)}% CI)")
    ax.set_ylim(0, 100)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def svg_bar_chart(results: StudyResults) -> str:
    """A self-contained SVG bar chart (no dependencies); names are XML-escaped."""
    width, height, left, bottom, top = 120 * len(results.methods) + 80, 320, 60, 50, 48
    plot_h = height - bottom - top
    y = lambda pct: top + plot_h * (1 - pct / 100)  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
             f'<text x="{width / 2}" y="18" text-anchor="middle">{html.escape(results.study)}: '
             f'{"aligned" if results.interface == "describe" else "win rate"} (%) '
             f'with {int(100 * results.confidence)}% bootstrap interval</text>',
             f'<line x1="{left}" y1="{y(0)}" x2="{width - 20}" y2="{y(0)}" stroke="black"/>',
             f'<line x1="{left}" y1="{y(0)}" x2="{left}" y2="{y(100)}" stroke="black"/>']
    for tick in range(0, 101, 25):
        parts.append(f'<text x="{left - 6}" y="{y(tick) + 4}" text-anchor="end">{tick}</text>')
    for k, m in enumerate(results.methods):
        x = left + 20 + 120 * k
        rate = 0.0 if np.isnan(m.win_rate) else 100 * m.win_rate
        parts.append(f'<rect class="bar" x="{x}" y="{y(rate):.2f}" width="80" height="{y(0) - y(rate):.2f}" '
                     f'fill="#4c72b0"><title>{html.escape(m.method)}: {rate:.1f}%</title></rect>')
        if not np.isnan(m.ci_low):
            cx, lo, hi = x + 40, y(100 * m.ci_low), y(100 * m.ci_high)
            parts.append(f'<line x1="{cx}" y1="{lo:.2f}" x2="{cx}" y2="{hi:.2f}" stroke="black"/>')
            parts += [f'<line x1="{cx - 6}" y1="{v:.2f}" x2="{cx + 6}" y2="{v:.2f}" stroke="black"/>' for v in (lo, hi)]
        parts.append(f'<text x="{x + 40}" y="{y(0) + 16}" text-anchor="middle">{html.escape(m.method)}</text>')
        parts.append(f'<text x="{x + 40}" y="{y(rate) - 4:.2f}" text-anchor="middle">{rate:.1f}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
