"""Plots that do not lie: facets, where, the refusal to join different runs, legend order."""

from __future__ import annotations

import subprocess
import sys

import pytest

import runstore
from runstore.errors import QueryError, VaryingParametersError
from runstore.exitcodes import PREFIX, ExitCode

from .runs import Driven, Echo

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (after choosing the backend)

DRIVES = [0.5, 1.0, 2.0]
DAMPINGS = [0.1, 0.2]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def driven(in_tmp):
    """A batch of 3 A x 3 drives x 2 dampings, in _res/driven.db."""
    batch = runstore.Batch("driven")
    batch.add_factorial_runs(Driven, {"A": [1, 2, 3], "drive": DRIVES, "damping": DAMPINGS})
    batch(verbose=0)
    return batch


def points(line):
    return list(zip(line.get_xdata(), line.get_ydata()))


def expected_line(batch, **fixed):
    """The (A, amp) points of the runs with these parameters, in order of A."""
    return sorted((r.parameters["A"], r.result["amp"]) for r in batch.get_runs_with(**fixed))


def test_col_gives_a_row_of_panels_whose_lines_each_hold_one_run_per_x(driven):
    axes = driven.plot("A", "amp", hue="drive", col="damping")
    assert axes.shape == (1, 2)
    assert [ax.get_title() for ax in axes.flat] == ["damping = 0.1", "damping = 0.2"]
    for ax, damping in zip(axes.flat, DAMPINGS):
        lines = ax.get_lines()
        assert [line.get_label() for line in lines] == ["drive=0.5", "drive=1.0", "drive=2.0"]
        for line, drive in zip(lines, DRIVES):
            # Every point of the line is the one run with this drive, damping and A.
            assert points(line) == expected_line(driven, drive=drive, damping=damping)
            assert len(points(line)) == 3
    assert axes[0, 0].get_shared_y_axes().joined(axes[0, 0], axes[0, 1])
    assert axes[0, 0].get_shared_x_axes().joined(axes[0, 0], axes[0, 1])
    (legend,) = axes[0, 0].figure.legends  # one legend for the figure
    assert [t.get_text() for t in legend.get_texts()] == ["drive=0.5", "drive=1.0", "drive=2.0"]
    # A drive has one color in every panel.
    colors = [{line.get_label(): line.get_color() for line in ax.get_lines()}
              for ax in axes.flat]
    assert colors[0] == colors[1] and len(set(colors[0].values())) == 3


def test_row_and_col_give_a_grid_rows_by_columns(driven):
    axes = driven.plot("A", "amp", row="damping", col="drive")
    assert axes.shape == (2, 3)
    for i, damping in enumerate(DAMPINGS):
        for j, drive in enumerate(DRIVES):
            ax = axes[i, j]
            assert ax.get_title() == f"damping = {damping:g} | drive = {drive!r}"
            (line,) = ax.get_lines()
            assert points(line) == expected_line(driven, drive=drive, damping=damping)
    assert axes[0, 0].get_shared_y_axes().joined(axes[0, 0], axes[1, 2])
    assert axes[0, 0].figure.legends == []  # no hue, no legend


def test_a_parameter_left_varying_is_refused_by_name_with_its_values(driven):
    with pytest.raises(VaryingParametersError) as caught:
        driven.plot("A", "amp", hue="drive")
    error = caught.value
    assert isinstance(error, QueryError)
    assert error.varying == {"damping": ["0.1", "0.2"]}
    message = str(error)
    assert "damping (2 values: 0.1, 0.2)" in message
    assert "col='damping'" in message and "where='damping=0.1'" in message
    with pytest.raises(VaryingParametersError) as caught:
        driven.plot("A", "amp")
    assert caught.value.varying == {"drive": ["0.5", "1.0", "2.0"], "damping": ["0.1", "0.2"]}
    with pytest.raises(VaryingParametersError, match="damping"):
        driven.plot("A", "amp", col="drive")
    assert plt.get_fignums() == []  # refused before a figure was made


def test_where_as_conditions_and_as_filters_chooses_the_same_runs(driven):
    wanted = [expected_line(driven, drive=d, damping=0.2) for d in DRIVES]
    for where in ({"damping": 0.2}, "damping=0.2", ["damping=0.2"], "damping>0.15"):
        ax = driven.plot("A", "amp", hue="drive", where=where)
        assert [points(line) for line in ax.get_lines()] == wanted, where
    ax = driven.plot("A", "amp", hue="drive", where={"damping": 0.2, "A__ge": 2})
    assert [points(line) for line in ax.get_lines()] == [w[1:] for w in wanted]
    ax = driven.plot("A", "amp", hue="drive", where=["damping=0.2", "A>=2"])
    assert [points(line) for line in ax.get_lines()] == [w[1:] for w in wanted]
    assert ax.get_title() == "driven (damping=0.2, A>=2)"
    # A filter on a scalar result, as `runstore runs` takes it.
    ax = driven.plot("A", "amp", hue="drive", where=["damping=0.1", "amp>3"])
    assert all(y > 3 for line in ax.get_lines() for _, y in points(line))
    with pytest.raises(VaryingParametersError, match="damping"):
        driven.plot("A", "amp", hue="drive", where={"A__ge": 2})
    # No run matches: an empty panel, of the kind asked for.
    empty = driven.plot("A", "amp", hue="drive", col="damping", where="A>100")
    assert empty.shape == (1, 1) and empty[0, 0].get_lines() == []
    assert empty[0, 0].get_title() == "driven (A>100)"
    assert driven.plot("A", "amp", where="A>100").get_lines() == []
    with pytest.raises(QueryError, match="cannot read the filter"):
        driven.plot("A", "amp", hue="drive", where="damping")
    with pytest.raises(TypeError, match="where must be"):
        driven.plot("A", "amp", hue="drive", where=0.2)
    with pytest.raises(TypeError, match="leave out ax"):
        driven.plot("A", "amp", ax=plt.subplots()[1], col="damping")


def test_legends_are_in_numeric_order_with_none_last(in_tmp):
    batch = runstore.Batch("legend")
    batch.add_factorial_runs(Echo, {"i": [0, 1], "x": [100, None, 10, 2.5, 2, "text"]})
    batch(verbose=0)
    ax = batch.plot("i", "i", hue="x")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["x=2", "x=2.5", "x=10", "x=100", "x=text", "x=None"]


def test_a_faceted_legend_is_in_numeric_order(in_tmp):
    batch = runstore.Batch("order")
    batch.add_factorial_runs(Driven, {"A": [1, 2], "drive": [100, 2, 10],
                                      "label": ["a", "bb"]})
    batch(verbose=0)
    axes = batch.plot("A", "amp", hue="drive", col="label")
    (legend,) = axes[0, 0].figure.legends
    assert [t.get_text() for t in legend.get_texts()] == ["drive=2", "drive=10", "drive=100"]
    assert [ax.get_title() for ax in axes.flat] == ["label = a", "label = bb"]


def runstore_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "runstore", *args], cwd=cwd,
                          capture_output=True, text=True)


def test_cli_plot_facets_and_filters_into_a_real_png(driven, tmp_path):
    driven.store.close()
    done = runstore_cli("plot", "--x", "A", "--y", "amp", "--row", "damping", "--col", "drive",
                        "--where", "A>=2", "--where", "drive!=2.0", "-o", "grid.png",
                        cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "wrote grid.png (4 lines in 4 panels)\n"
    image = plt.imread(tmp_path / "grid.png")
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
    done = runstore_cli("plot", "--x", "A", "--y", "amp", "--hue", "drive", "--col", "damping",
                        "-o", "lines.svg", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "wrote lines.svg (6 lines in 2 panels)\n"
    assert (tmp_path / "lines.svg").read_text().count("<svg") == 1


def test_cli_refuses_a_plot_that_would_join_different_runs_in_one_line(driven, tmp_path):
    driven.store.close()
    refused = runstore_cli("plot", "--x", "A", "--y", "amp", "--hue", "drive", "-o", "p.png",
                           cwd=tmp_path)
    assert refused.returncode == ExitCode.USAGE
    assert refused.stderr.startswith(PREFIX) and refused.stderr.count("\n") == 1
    assert "damping (2 values: 0.1, 0.2)" in refused.stderr
    assert "--col damping" in refused.stderr and "--where 'damping=0.1'" in refused.stderr
    assert not (tmp_path / "p.png").exists()
    bad = runstore_cli("plot", "--x", "A", "--y", "amp", "--where", "damping", "-o", "p.png",
                       cwd=tmp_path)
    assert bad.returncode == ExitCode.USAGE and bad.stderr.count("\n") == 1
    assert "cannot read the filter 'damping'" in bad.stderr


def test_cli_writes_no_image_when_no_run_is_left_to_plot(driven, tmp_path):
    driven.store.close()
    (tmp_path / "kept.png").write_bytes(b"an earlier plot")
    for where in ("A>=99", "drive=7.5"):
        empty = runstore_cli("plot", "--x", "A", "--y", "amp", "--col", "drive", "--row",
                             "damping", "--where", where, "-o", "kept.png", cwd=tmp_path)
        assert empty.returncode == ExitCode.FAILED, empty.stderr
        assert empty.stderr.startswith(PREFIX) and empty.stderr.count("\n") == 1
        assert "nothing to plot, so kept.png was not written: no run of batch " in empty.stderr
        assert f"matching {where} has values of both A and amp" in empty.stderr
        assert (tmp_path / "kept.png").read_bytes() == b"an earlier plot"


def test_long_text_values_are_cut_short_in_titles_legends_and_tables(in_tmp, capsys):
    from runstore.cli import echo_table

    long_a, long_b = "a" * 30 + "-first-variant", "a" * 30 + "-second-variant"
    batch = runstore.Batch("long")
    batch.add_factorial_runs(Driven, {"A": [1, 2], "label": [long_a, long_b]})
    batch(verbose=0)
    ax = batch.plot("A", "amp", hue="label")
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    cut = [v[:19] + "\u2026" + v[-20:] for v in (long_a, long_b)]  # both ends kept
    assert labels == [f"label={v}" for v in cut] and all(len(v) == 40 for v in cut)
    panels = batch.plot("A", "amp", col="label")
    assert [p.get_title() for p in panels.flat] == [f"label = {v}" for v in cut]
    plt.close("all")
    echo_table(["label"], [(long_a,)])
    assert capsys.readouterr().out.splitlines()[1] == cut[0]
    echo_table(["label"], [(long_a,)], as_csv=True)  # CSV keeps every character
    assert capsys.readouterr().out.splitlines()[1] == long_a
