"""``nextgpt eval``: caption media or generate media on a pair data set and report the metrics.

Examples::

    nextgpt eval --model nextgpt-7b-v0 --task caption --modality image \\
        --data cc3m.json --root images/
    nextgpt eval --model my-model --task generate --modality image \\
        --data coco.json --root val2014/ \\
        --metric-option inception_weights=weights/pt_inception-2015-12-05-6726825d.pth \\
        --metric-option clip_model=models/clip-vit-large-patch14 --json results.json

``--model``, ``--config`` and ``--set`` choose the model as for ``nextgpt chat``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nextgpt.cli.options import (
    add_json_argument,
    add_model_arguments,
    add_out_argument,
    add_placement_arguments,
    add_renamed,
    add_runtime_arguments,
    add_seed_argument,
    check_json_target,
    load_model_from_args,
    memory_plan_requested,
    planned_config_from_args,
    print_result,
)
from nextgpt.config import DecodeOptions
from nextgpt.errors import ConfigError


def add(parser: argparse.ArgumentParser):
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "caption: BLEU-4, ROUGE-L and CIDEr against the gold captions.\n"
        "generate: every metric the modality's plugin registers (see `nextgpt plugins`\n"
        "and the README). Metrics with pretrained feature extractors read LOCAL weights\n"
        "given with --metric-option NAME=PATH; nothing is downloaded, and a metric whose\n"
        "weights are missing is skipped with a note naming the option it needs."
    )
    add_model_arguments(parser, required=True)
    parser.add_argument(
        "--task",
        required=True,
        choices=("caption", "generate"),
        help="caption media, or generate media from captions",
    )
    parser.add_argument("--modality", required=True, help="the modality to caption or generate")
    parser.add_argument(
        "--data",
        required=True,
        metavar="FILE",
        help="pair data in the released format (cc3m.json, webvid.json, audiocap.json)",
    )
    parser.add_argument(
        "--root",
        default=None,
        metavar="DIR",
        help="folder the media names are relative to (default: the data file's folder)",
    )
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="evaluate at most N items")
    add_out_argument(parser, "outputs/eval", "generated media (task generate)")
    add_json_argument(parser)
    parser.add_argument(
        "--metric-option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an option for the metrics (repeatable), e.g. a local weights path, or device=cuda",
    )
    parser.add_argument(
        "--decode-option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a decoding option of the generated modality (repeatable): "
        "steps, guidance, height, width, num_frames, seconds, or a setting of the decoder's own "
        "(e.g. eta=0.0 for a diffusers pipeline)",
    )
    parser.add_argument(
        "--prompt",
        default=None,
        help="caption request; {modality} is replaced (default: 'Generate a caption for this {modality}.')",
    )
    parser.add_argument("--max-new-tokens", type=int, default=None, metavar="N", help="most tokens of an answer")
    add_seed_argument(parser)
    add_placement_arguments(parser)
    add_runtime_arguments(parser)
    add_renamed(parser, "--no-progress", "--quiet", dest="quiet", nargs=0)
    return run


def run(args: argparse.Namespace) -> int:
    from nextgpt.extras import require_extra

    require_extra("eval", "nextgpt eval")  # before the model loads
    from nextgpt.evaluation.runner import (
        DEFAULT_CAPTION_PROMPT,
        evaluate_captioning,
        evaluate_generation,
        parse_options,
    )
    from nextgpt.presets import PRESETS

    if args.limit is not None and args.limit <= 0:
        raise ConfigError(f"--limit: expected a positive number, got {args.limit}")
    if not Path(args.data).expanduser().is_file():
        raise ConfigError(f"--data: {args.data} is not a file")
    check_json_target(args)  # before the run, not after it
    if args.task == "generate":
        from nextgpt.files import check_writable_folder

        check_writable_folder(Path(args.out), "--out folder")
    metric_options = parse_options(args.metric_option, "--metric-option")
    decode = DecodeOptions.from_flat(parse_options(args.decode_option, "--decode-option"), "--decode-option")
    is_preset = args.model in PRESETS
    modalities = [args.modality] if is_preset else None
    planned_config_from_args(args, modalities=modalities)  # the model and its overrides, before anything loads
    if memory_plan_requested(args, modalities=modalities):
        return 0
    if is_preset and args.model == "tiny":
        print(
            "note: the tiny preset has RANDOM weights; its scores only show that the pipeline runs",
            file=sys.stderr,
        )
    model = load_model_from_args(args, modalities=modalities)
    common = dict(
        root=args.root,
        limit=args.limit,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        model_name=args.model,
        progress=not args.quiet,
    )
    if args.task == "caption":
        report = evaluate_captioning(
            model, args.data, args.modality, prompt=args.prompt or DEFAULT_CAPTION_PROMPT, **common
        )
    else:
        report = evaluate_generation(
            model,
            args.data,
            args.modality,
            args.out,
            metric_options=metric_options,
            decode=decode or None,
            **common,
        )
    print_result(args, report.to_dict(), report.table())
    return 0
