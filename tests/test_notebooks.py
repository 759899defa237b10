"""The notebooks in notebooks/ run top to bottom in a Jupyter kernel of this interpreter, with tiny settings
injected after their "parameters" cell (as papermill does), in a temporary working folder; no GPU, no network."""

import csv
import importlib.util
from pathlib import Path

import pytest
from PIL import Image

from cascade import CascadePipeline, auto_dtype
from cascade.testing.tiny_models import UNET_CONFIGS, tiny_cascade_stages

from hub_cache import cache_repo

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
# The tiny SD 1.5-like UNet of the other tests, one layer a block (the notebook sets sizes and text width).
TINY_UNET = {**UNET_CONFIGS["sd15"], "layers_per_block": 1, "norm_num_groups": 16}
TINY_TEXT_ENCODER = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)


def run_notebook(name: str, parameters: dict, folder: Path) -> str:
    """Runs ``notebooks/name`` in ``folder`` with ``parameters`` set after its parameters cell; returns the text
    of its outputs. A cell that raises fails the test (nbclient's ``CellExecutionError`` names the cell)."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    tagged = [i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name} needs exactly one cell tagged 'parameters'"
    assert not any(cell.get("outputs") for cell in notebook.cells), f"{name} is saved with outputs"
    source = "\n".join(f"{key} = {value!r}" for key, value in parameters.items())
    injected = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    notebook.cells.insert(tagged[0] + 1, injected)
    client = nbclient.NotebookClient(
        notebook, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(folder)}}
    )
    client.execute()
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", "") + output.get("data", {}).get("text/plain", ""))
            texts.extend(kind for kind in output.get("data", {}) if kind.startswith("image/"))
    return "\n".join(texts)


@pytest.fixture(autouse=True)
def no_gpu_no_network(monkeypatch):
    """The kernel inherits this environment: the GPU cells take their CPU branch and nothing is downloaded."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_quickstart_generates_a_gif_with_a_tiny_cascade(tmp_path):
    CascadePipeline(**tiny_cascade_stages()).save_pretrained(tmp_path / "tiny")
    parameters = {"MODEL_DIR": str(tmp_path / "tiny"), "NUM_FRAMES": 3, "STEPS": 2, "OUTPUT_GIF": "video.gif"}
    outputs = run_notebook("quickstart.ipynb", parameters, tmp_path)

    with Image.open(tmp_path / "video.gif") as gif:  # 3 keyframes -> 9 frames, 8x8 -> 32x32 -> 128x128
        assert (gif.n_frames, gif.size) == (9, (128, 128))
    assert "image/gif" in outputs and "image/png" in outputs  # the GIF and the stage strips were shown
    assert outputs.count("No CUDA GPU here: skipped") == 2


def test_quickstart_gpu_section_loads_hub_repos_from_the_cache_in_a_native_dtype_on_the_cpu(
    tmp_path, monkeypatch
):
    """The GPU cells' code (Hub repo ids, the fastest native dtype, xformers or SDPA, model offload), run on the
    CPU: the repos come from a Hugging Face cache laid out on disk, read offline. The dtype is the one this CPU
    computes natively (bfloat16 with AVX512-BF16 or AMX, else float32), so the test is quick on every CPU."""
    stages = tiny_cascade_stages()
    CascadePipeline(**stages).save_pretrained(tmp_path / "tiny")
    stages["keyframes"].save_pretrained(tmp_path / "tiny-keyframes")
    cache = tmp_path / "hub"
    cache_repo(tmp_path / "tiny", cache, "cascade-test/tiny-cascade")
    cache_repo(tmp_path / "tiny-keyframes", cache, "cascade-test/tiny-keyframes")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    parameters = {
        "MODEL_DIR": str(tmp_path / "tiny"),
        "NUM_FRAMES": 3,
        "STEPS": 2,
        "HUB_REPO_ID": "cascade-test/tiny-cascade",
        "HUB_KEYFRAMES_REPO_ID": "cascade-test/tiny-keyframes",
        "GPU_DEVICE": "cpu",
    }
    outputs = run_notebook("quickstart.ipynb", parameters, tmp_path)

    assert "No CUDA GPU here" not in outputs
    dtype = auto_dtype("cpu")
    assert f"dtype on cpu: {dtype} (native there: " in outputs
    with Image.open(tmp_path / "hub_cascade.gif") as gif:
        assert (gif.n_frames, gif.size) == (9, (128, 128))
    with Image.open(tmp_path / "hub_keyframes.gif") as gif:
        assert gif.n_frames == 3
    assert f"cascade-test/tiny-cascade: 9 frames, UNets in {dtype}, on cpu" in outputs
    assert f"cascade-test/tiny-keyframes: 3 keyframes in {dtype} on cpu" in outputs
    assert "DiffusionPipeline loaded a KeyframesPipeline" in outputs
    xformers_missing = importlib.util.find_spec("xformers") is None
    assert ("attention runs on PyTorch's SDPA" in outputs) == xformers_missing


def test_train_your_own_trains_exports_samples_and_scores(tmp_path):
    parameters = {
        "WORK_DIR": "work",
        "SIZE": 8,
        "NUM_FRAMES": 3,
        "PRETRAIN_STEPS": 2,
        "KEYFRAMES_STEPS": 2,
        "BATCH_SIZE": 2,
        "UNET": TINY_UNET,
        "TEXT_ENCODER": TINY_TEXT_ENCODER,
        "NUM_SAMPLES": 2,
        "SAMPLE_STEPS": 2,
    }
    outputs = run_notebook("train_your_own.ipynb", parameters, tmp_path)

    runs = tmp_path / "work" / "runs"
    assert {"unet", "text_encoder", "tokenizer"} <= {
        path.name for path in (runs / "text_to_image/model").iterdir()
    }
    assert (runs / "keyframes" / "model" / "model_index.json").is_file()
    for run in ("text_to_image", "keyframes"):
        with open(runs / run / "loss.csv", newline="") as file:
            assert [row["step"] for row in csv.DictReader(file)] == ["1", "2"]
    with Image.open(tmp_path / "work" / "samples.gif") as gif:  # 2 samples side by side, 4x enlarged
        assert (gif.n_frames, gif.size) == (3, (2 * 8 * 4, 8 * 4))
    for attribute in ("color", "shape", "direction"):
        assert f"{attribute:9s} accuracy: model" in outputs
