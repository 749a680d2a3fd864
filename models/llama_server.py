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

    from llama_cpp.server.__main__ import main as serve

    from models.llm.llamacpp import _model_params

    sys.argv = [f"{sys.executable} -m models.llama_server", *rest]
    with _model_params(use_extra_bufts=choice.enabled):  # the server builds its model inside
        serve()


if __name__ == "__main__":
    main()
