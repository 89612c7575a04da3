"""The built distributions work outside a clone: the wheel and sdist hold the recipes and the LICENSE, and a wheel
installed into a fresh virtual environment runs `trl-vcrl --help`, lists its recipes and loads one by name. The
quickstart notebook's install cell stops with a clear message when it cannot install.

The fresh environment gets the wheel only (`--no-deps`); its dependencies come from the test interpreter's
site-packages through a `.pth` line, so the test runs offline and in seconds. A directory added by a `.pth` line has
its own `.pth` files ignored, so the editable install of the checkout there is not seen: `trl_vcrl` comes from the
wheel, as the test asserts.
"""

import json
import os
import shutil
import site
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).parent.parent
RECIPE_FILES = sorted(path.relative_to(REPO_ROOT).as_posix() for path in (REPO_ROOT / "trl_vcrl").rglob("*.yaml"))
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def run(command: list, cwd: Path) -> str:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")} | OFFLINE_ENV
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path]:
    """The sdist and wheel, built with setuptools from a copy of the sources (the checkout stays clean)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("setup.cfg", "pyproject.toml", "MANIFEST.in", "README.md", "LICENSE"):
        shutil.copy(REPO_ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("trl_vcrl", "tests"):
        shutil.copytree(REPO_ROOT / name, source / name, ignore=ignore)
    run(
        [sys.executable, "-c", "from setuptools import build_meta as b; b.build_sdist('dist'); b.build_wheel('dist')"],
        source,
    )
    (sdist,), (wheel,) = (source / "dist").glob("*.tar.gz"), (source / "dist").glob("*.whl")
    return {"sdist": sdist, "wheel": wheel}


def test_wheel_holds_recipes_license_and_metadata(dists):
    assert len(RECIPE_FILES) == 7  # five training recipes, two accelerate configs
    with zipfile.ZipFile(dists["wheel"]) as wheel:
        names = wheel.namelist()
        (metadata,) = [name for name in names if name.endswith(".dist-info/METADATA")]
        metadata = wheel.read(metadata).decode()
    assert set(RECIPE_FILES) <= set(names)
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert "Requires-Python: >=3.11" in metadata
    assert "Apache-2.0" in metadata
    assert 'Requires-Dist: deepspeed>=0.18.6; extra == "deepspeed"' in metadata  # TRL 1.16's own pins
    assert 'Requires-Dist: transformers!=5.1.0; extra == "deepspeed"' in metadata
    assert "Requires-Dist: math-verify<0.10,>=0.9.0" in metadata  # a range, not an exact pin
    assert "Project-URL: Paper, https://huggingface.co/papers/2509.19803" in metadata
    assert "Classifier: Programming Language :: Python :: 3.11" in metadata


def test_sdist_holds_recipes_and_license_and_no_tests(dists):
    with tarfile.open(dists["sdist"]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert set(RECIPE_FILES) <= names and "LICENSE" in names
    # tests need the repository's fixtures and conftest.py: the sdist leaves them all out
    assert not [name for name in names if name.startswith("tests")]


@pytest.mark.slow
def test_installed_wheel_runs_outside_a_clone(dists, tmp_path):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    (purelib,) = json.loads(
        run([str(python), "-c", "import site, json; print(json.dumps(site.getsitepackages()))"], tmp_path)
    )
    (Path(purelib) / "test_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q"]
    run([*pip, str(dists["wheel"])], cwd=tmp_path)

    help_text = run([str(venv / "bin" / "trl-vcrl"), "--help"], cwd=tmp_path)
    assert "usage: trl-vcrl" in help_text and "list the bundled recipes" in help_text

    check = """
import json, trl_vcrl
from trl_vcrl.cli import main, make_train_parser, resolve_config_args
main(["recipes"])
main(["recipes", "qwen3_4b_base_vcrl"])
script_args, training_args, model_args = make_train_parser().parse_args_and_config(
    args=resolve_config_args(["--config", "qwen3_4b_base_vcrl", "--use_cpu", "true"])
)
print(json.dumps({"package": trl_vcrl.__file__, "model": model_args.model_name_or_path,
                  "max_steps": training_args.max_steps, "max_prompt_length": script_args.max_prompt_length}))
"""
    output = run([str(python), "-c", check], cwd=tmp_path).splitlines()
    loaded = json.loads(output[-1])
    assert Path(loaded["package"]).is_relative_to(venv)  # the wheel's package, not the checkout
    assert loaded == loaded | {"model": "Qwen/Qwen3-4B-Base", "max_steps": 500, "max_prompt_length": 1024}
    recipe_path = Path(output[-2])
    assert recipe_path.is_relative_to(venv) and recipe_path.name == "qwen3_4b_base_vcrl.yaml"
    listing = "\n".join(output[:-2])
    for name in ("qwen3_4b_base_vcrl", "qwen3_0.6b_base_vcrl_lora", "accelerate/zero3", "accelerate/fsdp2"):
        assert f"  {name} " in listing


def install_cell() -> str:
    notebook = json.loads((REPO_ROOT / "notebooks" / "quickstart.ipynb").read_text())
    code = ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]
    (source,) = [source for source in code if "TRL_VCRL_REVISION" in source]
    return source


@pytest.mark.parametrize(
    "repository, message",
    [
        ("", "trl-vcrl is not installed: set TRL_VCRL_REPOSITORY at the top of this cell"),
        # the bare interpreter has no pip: the install fails, and the cell says so instead of going on
        ("https://example.invalid/trl-vcrl.git", "Installing trl-vcrl[offline] @ git+https://example.invalid/"),
    ],
)
def test_quickstart_install_cell_stops_with_a_clear_message(tmp_path, repository, message):
    """The notebook's install cell, run by a bare Python 3.11 outside a clone, where trl_vcrl is not importable."""
    run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], cwd=tmp_path)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"} | {
        "TRL_VCRL_REPOSITORY": repository,
        "PATH": "/usr/bin:/bin",  # no nvidia-smi
    }
    result = subprocess.run(
        [str(tmp_path / "bare" / "bin" / "python"), "-c", install_cell()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "RuntimeError: " + message in result.stderr, result.stderr
