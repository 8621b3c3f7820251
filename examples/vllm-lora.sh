#!/bin/bash
# Serve a hub model with LoRA adapters through vLLM's OpenAI-compatible server, and
# point ptychobench's openai backend at it; one adapter per cell, by name.
# (docs/cluster.md walks through it; this script was not run here: no GPU.)
set -euo pipefail
# 1. the adapters: ptychobench's own (adapter_config.json + adapter_model.safetensors)
ptychobench train --task params --model llama-3.1-8b --profile gpu --out adapters/l8b-params-seed0 --seed 0
# 2. the server: adapters enabled, each under a name; prefix caching on (ICL prompts share
#    a long system prompt and demonstrations)
vllm serve meta-llama/Llama-3.1-8B-Instruct --port 8000 \
  --enable-lora --max-lora-rank 16 --max-loras 4 \
  --lora-modules l8b-params-seed0=adapters/l8b-params-seed0 \
  --enable-prefix-caching --max-model-len 8192 &
until curl -sf localhost:8000/v1/models > /dev/null; do sleep 5; done
# 3. the run: examples/vllm-lora.yaml names the base model and each adapter as a model
ptychobench run examples/vllm-lora.yaml --out runs/vllm-lora
