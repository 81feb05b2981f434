"""notebooks/quickstart.ipynb runs top to bottom on the embedded model and shows its
pictures (the seed's Colab users start there)."""

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


@pytest.mark.slow
@pytest.mark.needs_toy_model
def test_quickstart_notebook_runs_and_shows_its_pictures(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    pictures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pictures) >= 5  # plain, styled, grid, loss plot, the new network's picture
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "<hypernet:water:1>" in text and "<hypernet:mine:1>" in text and "finished" in text
