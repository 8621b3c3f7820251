"""``python -m ptychobench.models.llamacpp_server``: llama-cpp-python's OpenAI server, safe on AMX CPUs.

Takes the same arguments as ``python -m llama_cpp.server``. The only difference: models
load without llama.cpp's extra CPU buffer types on CPUs with AMX, where llama-cpp-python
0.3.36 crashes on the first request (see ``llamacpp.without_extra_buffers``).
"""

from __future__ import annotations

from .llamacpp import without_extra_buffers


def main() -> None:
    from llama_cpp.server.__main__ import main as serve

    with without_extra_buffers():
        serve()


if __name__ == "__main__":
    main()
