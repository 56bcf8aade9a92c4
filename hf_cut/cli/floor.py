"""
The floor under a γ sweep's token accuracy: the accuracy of two predictors that never read their input (the most
frequent training token; the most frequent training token at each position of the completion), fitted on the
training completions and scored on the held-out tokens that `eval/ood_sweep.py` scores. A model under strong noise
that scores no more than this has lost everything its input told it.

```bash
# the SmolLM2 recipe's data: 480 training examples, the sweep's 64 held-out ones
python eval/floor.py --model smollm2 --num_train 480 --limit 64 --output studies/smollm2_noise/results/floor.json
```
"""

import argparse

from hf_cut.files import write_json


def main(args: argparse.Namespace) -> dict:
    from hf_cut.data import load_instruction_dataset
    from hf_cut.evaluation.floor import completion_tokens, input_free_accuracy
    from hf_cut.evaluation.tasks.causal_lm import load

    data = load_instruction_dataset(args.dataset or "builtin")
    train, test = data["train"], data["test"]
    if args.num_train is not None:
        train = train.select(range(min(args.num_train, len(train))))
    if args.limit is not None:
        test = test.select(range(min(args.limit, len(test))))
    model, tokenizer = load(args.model)
    floor = input_free_accuracy(completion_tokens(model, tokenizer, train), completion_tokens(model, tokenizer, test))
    floor.update(dataset=args.dataset or "builtin", num_train=len(train), num_test=len(test), model=args.model)
    print(f"{floor['num_tokens']} held-out completion tokens of {len(test)} examples: majority token "
          f"{100 * floor['majority']:.1f}%, positional {100 * floor['positional']:.1f}%")  # fmt: skip
    if args.output:
        write_json(args.output, floor, indent=2)
        print(f"Written: {args.output}")
    return floor


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--model", required=True, help="a saved causal LM or 'smollm2' (its tokenizer is used)")
    parser.add_argument("--dataset", default=None, help="Hub name or local path (default: the built-in data)")
    parser.add_argument("--num_train", type=int, default=None, help="fit on the first N training examples")
    parser.add_argument("--limit", type=int, default=None, help="score the first N held-out examples")
    parser.add_argument("--output", default=None, help="write the result as JSON here")
    return parser


def check_args(args: argparse.Namespace) -> None:
    from hf_cut.validation import check_model_paths

    check_model_paths([args.model], short_names=("smollm2",))
    for name in ("num_train", "limit"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name} must be a positive number of examples, got {getattr(args, name)}.")


def parse_args(argv=None) -> argparse.Namespace:
    from hf_cut.validation import parse_checked

    return parse_checked(make_parser(), argv, check_args)



def run(argv: list[str] | None = None):
    """The command line: `hf-cut floor …` (and `python eval/floor.py …`)."""
    return main(parse_args(argv))
