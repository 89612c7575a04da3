"""`vllm serve ...` with one CPU-only adjustment: what the vLLM test stage runs instead of `trl vllm-serve`.

    VLLM_SERVER_DEV_MODE=1 python tests/vllm_stage/serve_cpu.py serve MODEL --host 127.0.0.1 --port P ...

`vllm_support.trl_serve_command` builds the arguments with TRL's own `trl vllm-serve` code. This applies
`vllm_support.keep_vllm_cpu_weights_reloadable()` (so weights loaded later with `reload_weights` reach the
computation), then runs vLLM's unmodified CLI; the forked engine-core process inherits the adjustment.
"""

import sys

import vllm_support

vllm_support.keep_vllm_cpu_weights_reloadable()

from vllm.entrypoints.cli.main import main  # noqa: E402

if __name__ == "__main__":
    sys.argv[0] = "vllm"
    sys.exit(main())
