"""llama-cpp-python's OpenAI-compatible server with kbqa's CPU rule applied.

``python -m models.llama_server --model FILE.gguf [any llama_cpp.server option] [--extra-buffers
auto|on|off]`` runs ``python -m llama_cpp.server`` exactly, except that llama.cpp's extra CPU buffer
types follow :func:`models.cpu.choose_extra_buffers` (``auto``: off on CPUs that report AMX, where
llama.cpp 0.3.36 crashes on the first real prompt). Use it as the server behind
``llm.backend=openai`` on such a machine; ``llama_cpp.server`` itself has no option for it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from models.cpu import CpuInfo, choose_extra_buffers


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--extra-buffers", choices=("auto", "on", "off"), default="auto")
    ours, rest = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    choice = choose_extra_buffers(ours.extra_buffers, CpuInfo.current())
    print(f"kbqa: {choice.reason}", file=sys.stderr, flush=True)

    import llama_cpp.llama_cpp as lib
    from llama_cpp.server.__main__ import main as serve

    original = lib.llama_model_default_params

    def params() -> object:
        p = original()
        p.use_extra_bufts = choice.enabled
        return p

    lib.llama_model_default_params = params  # this process serves one model: set for its lifetime
    sys.argv = [f"{sys.executable} -m models.llama_server", *rest]
    serve()


if __name__ == "__main__":
    main()
