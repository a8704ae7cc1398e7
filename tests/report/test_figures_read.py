"""Figures that read (issue 25): labels that do not overlap, whole-number epochs, axis labels
and captions, thumbnails >= 200 px, one number format per table column. The figures are
captured before rendering (report.figures._render) and measured with matplotlib's own
text extents."""

import numpy as np
import pandas as pd
import pytest

from radlens_cli.report import figures as rf


@pytest.fixture
def captured(monkeypatch):
    """Every matplotlib figure a report function renders, drawn, before it is closed."""
    figs = []
    real = rf._render

    def keep(fig, name, title, caption):
        fig.canvas.draw()
        fig.radlens_renderer = fig.canvas.get_renderer()   # kept: closing the figure drops its canvas
        figs.append(fig)
        return real(fig, name, title, caption)

    monkeypatch.setattr(rf, "_render", keep)
    return figs


def _boxes(labels, renderer):
    return [t.get_window_extent(renderer) for t in labels if t.get_text()]


def _overlap(boxes) -> bool:
    return any(a.overlaps(b) for k, a in enumerate(boxes) for b in boxes[k + 1:])


def test_checkpoint_labels_do_not_overlap(captured):
    from radlens_cli.report.checkpoints import heatmap

    names = [f"dec-ft-volume-epoch{e:03d}" for e in (1, 2, 3)]
    fig = heatmap(["firstorder", "glcm"], names, np.array([[0.1, 0.2, -0.1], [0.0, 0.3, 0.2]]), "delta_r2")
    ax = captured[0].axes[0]
    ticks = ax.get_xticklabels()
    assert [t.get_text() for t in ticks] == ["…epoch001", "…epoch002", "…epoch003"]
    assert not _overlap(_boxes(ticks, captured[0].radlens_renderer))
    assert all(n in fig.caption for n in names)   # the full names stay in the caption
    assert rf.short_labels(["a", "b"]) == ["a", "b"]
    assert rf.short_labels(["x" * 30]) == ["x" * 17 + "…"]


def test_delta_importance_ticks_do_not_run_together(captured):
    rows = pd.DataFrame({"column": [f"t2/original_glrlm_Feature{i}" for i in range(10)],
                         "modality": "t2", "family": "glrlm", "feature": [f"Feature{i}" for i in range(10)],
                         "delta_r2": np.linspace(0.1, 0.5, 10),
                         "delta_importance": -np.linspace(0.0, 0.1637, 10)})
    rf.delta_view(rows, "Largest gains", rf.GAIN, ["delta_r2", "delta_importance"], {})
    fig = captured[0]
    r = fig.radlens_renderer
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticklabels() if t.get_text()]
        assert len(ticks) <= 6 and not _overlap(_boxes(ticks, r)), [t.get_text() for t in ticks]


def test_epoch_axis_has_whole_numbers(captured):
    df = pd.DataFrame({"epoch": [1, 2, 3, 1, 2, 3], "split": ["train"] * 3 + ["val"] * 3,
                       "loss": [1.0, 0.8, 0.7, 1.1, 0.9, 0.85]})
    rf.metric_curves(df, "m.csv", "fig_m")
    for ax in captured[0].axes:
        if ax.get_xlabel() == "epoch":
            ticks = [v for v in ax.get_xticks() if ax.get_xlim()[0] <= v <= ax.get_xlim()[1]]
            assert ticks and all(float(v).is_integer() for v in ticks), ticks


def test_rad4xcnn_bars_have_a_y_label_and_a_sentence_caption(captured):
    df = pd.DataFrame({"modality": ["t2", "adc"], "family": ["glcm", "glszm"], "deep_pre": [3, 5],
                       "deep_ft": [4, 2]})
    fig = rf.pre_ft_bars(df, ["modality", "family"], "deep_pre", "deep_ft", "Deep features explained", "fig_c")
    assert captured[0].axes[0].get_ylabel().replace("\n", " ") == "deep features with a correlated radiomic feature"
    assert fig.caption.startswith("Number of deep features with a correlated radiomic feature per modality / family")
    assert fig.caption != "deep_pre vs deep_ft."


def test_probe_caption_follows_the_protocol(captured):
    df = pd.DataFrame({"table": ["pre", "ft"], "model": ["ridge", "ridge"], "protocol": "train-test",
                       "r2_mean": [0.1, 0.2], "r2_sd": [np.nan, np.nan]})
    fig = rf.mean_sd_bars(df, "Probe", "fig_probe")
    assert "train-test" in fig.caption and "sd over folds" not in fig.caption
    df["protocol"] = "cv-all"
    assert "mean ± sd over folds" in rf.mean_sd_bars(df, "Probe", "fig_probe").caption


def test_thumbnails_are_at_least_200_px_and_titles_wrap():
    from radlens_cli.report import images as ri

    sl = np.random.default_rng(0).normal(size=(40, 40))
    ms = np.zeros((40, 40), bool)
    ms[10:30, 12:28] = True
    view = (sl, ms, (1.0, 1.0), (-2.0, 2.0), (0, 40, 0, 40))
    cells = [(view, f"low: {ri.panel_value(v)}\ncase00{k}") for k, v in enumerate((-8.5713e-04, 0.12, 6.556, 1.2e6))]
    fig = ri.grid_figure(cells, 4, "fig_panels_gains_1", "t2/original_glrlm_GrayLevelNonUniformityNormalized"
                         " — a wavelet-LLH feature: the original image is shown", "c")
    assert fig.width / 4 >= 200
    assert [ri.panel_value(v) for v in (-8.5713e-04, 0.12, 6.556, 1.2e6)] == ["-8.57e-4", "0.12", "6.56", "1.20e6"]
    assert "\n" in rf.wrap_title("x " * 60, 70)


def test_one_number_format_per_column():
    from radlens_cli.report.html import column_format

    f = column_format([-8.57e-04, 0.12, 3e-4], "delta_importance")
    assert [f(v) for v in (-8.57e-04, 0.12)] == ["-8.57e-04", "1.20e-01"]
    g = column_format([0.5, 0.12, 3e-5], "r2_pre")
    assert [g(v) for v in (0.5, 3e-5)] == ["0.500", "0.000"]
    q = column_format([0.5, 1e-5], "q_bh")
    assert [q(v) for v in (0.5, 1e-5)] == ["0.500", "< 0.001"]
