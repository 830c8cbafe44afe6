"""``nextgpt cache --config FILE``: compute the frozen encoders' features and the decoders'
caption embeddings of a training config's data once, into its ``model.cache_dir``; later runs
(any stage, any epoch) read them instead of running the frozen models. ``--model``,
``--set`` and ``--cache-dir`` replace the config's ``model.model``, add to its
``model.overrides`` and replace its ``model.cache_dir``, as for ``nextgpt fit``."""

from __future__ import annotations

import argparse

from nextgpt.cli.options import MODEL_HELP


def add(parser: argparse.ArgumentParser):
    parser.add_argument("--config", required=True, metavar="FILE", help="a training config (as for nextgpt fit)")
    parser.add_argument("--model", default=None, metavar="NAME", help=f"{MODEL_HELP} (default: the config's)")
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set one setting of the model configuration (repeatable), as for nextgpt fit",
    )
    parser.add_argument("--cache-dir", default=None, metavar="DIR", help="the cache folder (default: model.cache_dir)")
    parser.add_argument("--batch-size", type=int, default=16, metavar="N", help="items encoded per call (default: 16)")
    return run


def _check_batch_size(value: int) -> None:
    from nextgpt.errors import ConfigError

    if value <= 0:
        raise ConfigError(f"--batch-size: expected a positive number, got {value}")


def run(args: argparse.Namespace) -> int:
    from nextgpt.extras import require_extra

    require_extra("train", "nextgpt cache")
    from nextgpt.errors import ConfigError
    from nextgpt.training.cache import fill_caches
    from nextgpt.training.cli import parse_config
    from nextgpt.training.datamodule import NextGPTDataModule
    from nextgpt.training.module import NextGPTLightningModule

    _check_batch_size(args.batch_size)
    config = parse_config(args.config)
    model_args = {k: v for k, v in vars(config.model).items() if not k.startswith("_")}
    if args.cache_dir:
        model_args["cache_dir"] = args.cache_dir
    if args.model:
        model_args["model"] = args.model
    model_args["overrides"] = [*(model_args.get("overrides") or []), *args.settings]
    if not model_args.get("cache_dir"):
        raise ConfigError(f"{args.config}: model.cache_dir is not set (or pass --cache-dir)")
    module = NextGPTLightningModule(**model_args)
    module.configure_model()
    data_args = {k: v for k, v in vars(config.data).items() if not k.startswith("_")}
    data_args.update(plugins=model_args.get("plugins"), cache_media=True)
    datamodule = NextGPTDataModule(**data_args)
    datamodule.setup("fit")
    datasets = [d for d in (datamodule.train_set, datamodule.val_set) if d is not None]
    counts = fill_caches(module, datasets, args.batch_size)
    skipped = f", {counts['skipped']} unreadable file(s) skipped" if counts["skipped"] else ""
    print(f"cache {model_args['cache_dir']}: {counts['computed']} computed, {counts['cached']} already cached{skipped}")
    return 0
