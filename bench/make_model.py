"""Save a random-init Llama of one of bench/benchmark.py's shapes, with the built-in BPE tokenizer, as a plain folder
(for the GPU checks of bench/gpu_check.sh: QLoRA loads a model by path; no download).

    python bench/make_model.py --shape gpu_1b --output outputs/gpu_check/model_1b
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None) -> None:
    from benchmark import SHAPES

    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from hf_cut.data import builtin_instruction_dataset, train_builtin_tokenizer

    shape = SHAPES[args.shape]
    data = builtin_instruction_dataset(num_train=500, num_test=10)["train"]
    tokenizer = train_builtin_tokenizer((r["prompt"] + r["completion"] for r in data), vocab_size=1024)
    config = LlamaConfig(
        vocab_size=shape["vocab"], hidden_size=shape["hidden"], intermediate_size=shape["intermediate"],
        num_hidden_layers=shape["layers"], num_attention_heads=shape["heads"], num_key_value_heads=shape["kv_heads"],
        tie_word_embeddings=shape.get("tied", False), pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(getattr(torch, shape["dtype"]))
    model.save_pretrained(args.output)
    tokenizer.save_pretrained(args.output)
    print(f"{args.shape}: {sum(p.numel() for p in model.parameters()) / 1e9:.2f}B parameters → {args.output}")


if __name__ == "__main__":
    main()
