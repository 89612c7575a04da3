"""The notebooks run headless on their CPU path (parameterised to a few steps) and produce what they promise."""

import json
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def execute(name: str, workdir: Path) -> dict:
    """Run `notebooks/<name>` in `workdir` (its relative outputs land there) and return the executed notebook."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, if any cell fails
    return notebook


def images(notebook) -> int:
    return sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )


def vcrl_log_entries(trainer_state: Path) -> list[dict]:
    history = json.loads(trainer_state.read_text())["log_history"]
    return [entry for entry in history if "vcrl/kappa" in entry]


@pytest.mark.slow
def test_analysis_notebook_draws_the_curriculum_of_a_run(tmp_path, monkeypatch):
    monkeypatch.setenv("VCRL_NOTEBOOK_TOY_STEPS", "4")
    notebook = execute("analysis.ipynb", tmp_path)
    assert images(notebook) >= 2  # the curriculum figure and the run comparison
    states = sorted((tmp_path / "outputs" / "analysis-toy" / "vcrl").glob("checkpoint-*/trainer_state.json"))
    assert states and len(vcrl_log_entries(states[-1])) == 4


@pytest.mark.slow
def test_quickstart_notebook_trains_with_vcrl_on_the_cpu_path(tmp_path, monkeypatch):
    output_dir = tmp_path / "quickstart"
    monkeypatch.setenv("VCRL_NOTEBOOK_MAX_STEPS", "2")
    monkeypatch.setenv("VCRL_NOTEBOOK_OUTPUT_DIR", str(output_dir))
    monkeypatch.delenv("HF_TOKEN", raising=False)  # the push cell must skip itself without a token
    notebook = execute("quickstart.ipynb", tmp_path)
    entries = vcrl_log_entries(output_dir / "checkpoint-2" / "trainer_state.json")
    assert [entry["step"] for entry in entries] == [1, 2]
    assert "VCRL" in (output_dir / "README.md").read_text()  # the model card
    assert images(notebook) >= 1
