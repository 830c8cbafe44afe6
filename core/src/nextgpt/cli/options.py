"""Options the commands share, each with one meaning on every command that takes it:

==================  ====================================================================================
``--model NAME``    the model: a preset (``tiny``, ``nextgpt-7b-v0``), a named model (a folder in
                    ``NEXTGPT_HOME/models``, e.g. ``toy``), a model folder or a hub id
``--config FILE``   the configuration of what the command runs: a model configuration (YAML or JSON,
                    laid over ``--model``'s) where a command builds a model, a training
                    configuration for ``fit`` and ``cache``
``--set KEY=VALUE`` one setting of the model configuration (``llm.max_new_tokens=64``,
                    ``modalities.image.decoder.backend=pixart-sigma``), repeatable
``--request MOD``   ask for this modality in the answer (as ``generate(request=[...])``), repeatable
``--out DIR``       the folder new files are written under (numbered names: nothing is replaced)
``--json [FILE]``   the result as JSON, on standard output instead of the table, or into FILE
``--seed N``        seeds the LLM's sampling and the decoders (default: the configuration's seed)
``--overwrite``     allow replacing an existing output file or folder
``--quiet``         no progress bars; ``--threads N`` torch's CPU threads
``--device DEV``    where the model runs: ``auto`` (a GPU when there is one, the default), ``cpu``,
                    ``cuda``, ``cuda:N``
``--dtype TYPE``    the frozen parts' dtype (``float32``, ``float16``, ``bfloat16``; default: the
                    configuration's ``llm.dtype``)
``--dry-run``       print the memory plan (each component's parameters and bytes on its device,
                    from the configuration on meta tensors, no weights read) and stop
==================  ====================================================================================

A model folder a command writes is its positional ``DIRECTORY`` argument (``export``,
``convert-legacy``). Old spellings (``--preset``, ``--want``, ``--dir``, ``--no-progress``) still
work, with a warning naming the new one; ``convert-legacy --out DIR`` is an error saying to give
DIR as its second argument.

`add_model_arguments`, `add_placement_arguments` and `load_model_from_args` are what every
command that builds a model uses (chat, demo, eval, and the servers).
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nextgpt.errors import NextGPTWarning
from nextgpt.threads import ENV_THREADS

if TYPE_CHECKING:
    import torch

    from nextgpt.config import NextGPTConfig
    from nextgpt.model import NextGPTModel
    from nextgpt.overrides import Overrides
    from nextgpt.plugins import PluginRegistry

MODEL_HELP = (
    "a preset (tiny, nextgpt-7b-v0, qwen2.5-7b), a named model in NEXTGPT_HOME/models (e.g. toy), "
    "a folder written by save_pretrained, or a hub id"
)
SEED_HELP = "seeds the LLM's sampling and the decoders (default: the model configuration's seed)"


class RenamedOptionWarning(NextGPTWarning):
    """An option was given by its old name; it still works, and the warning names the new one."""


class _Renamed(argparse.Action):
    """An old spelling of an option: does what the new one does, and warns with the new name."""

    def __init__(self, option_strings: Sequence[str], dest: str, new: str, append: bool = False, **kwargs: Any):
        kwargs.setdefault("help", argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kwargs)
        self.new = new
        self.append = append

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option=None):
        message = f"{option} is an old spelling: use {self.new} (it means the same)"
        warnings.warn(message, RenamedOptionWarning, stacklevel=2)
        if self.nargs == 0:
            values = True
        if self.append:
            values = [*(getattr(namespace, self.dest, None) or []), values]
        setattr(namespace, self.dest, values)


def add_renamed(parser: argparse.ArgumentParser, old: str, new: str, dest: str, **kwargs: Any) -> None:
    """Accept ``old`` as an old spelling of ``new`` (stored in ``dest``), with a warning.
    ``append=True`` for repeatable options, ``nargs=0`` for flags."""
    parser.add_argument(old, dest=dest, action=_Renamed, new=new, **kwargs)


class _Replaced(argparse.Action):
    """An old option that cannot simply be renamed: an error saying what to write instead."""

    def __init__(self, option_strings: Sequence[str], dest: str, instead: str, **kwargs: Any):
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)
        self.instead = instead

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option=None):
        from nextgpt.errors import ConfigError

        raise ConfigError(f"{option} is an old spelling: {self.instead}")


def add_replaced(parser: argparse.ArgumentParser, old: str, instead: str) -> None:
    """Refuse the old option ``old`` with one line saying what to write ``instead``."""
    parser.add_argument(old, dest=f"replaced_{old.strip('-')}", action=_Replaced, instead=instead)


# -- the model -------------------------------------------------------------------------------------


def add_model_arguments(parser: argparse.ArgumentParser, required: bool = False, default: str = "tiny") -> None:
    """``--model NAME`` (default ``default`` unless ``required``), ``--config FILE`` and
    ``--set KEY=VALUE``: what `load_model_from_args` builds."""
    parser.add_argument(
        "--model",
        required=required,
        default=None if required else default,
        metavar="NAME",
        help=MODEL_HELP + ("" if required else f" (default: {default})"),
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="a model configuration (YAML or JSON: a NextGPTConfig or part of one) laid over --model's",
    )
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set one setting of the model configuration, after --config (repeatable), e.g. "
        "llm.max_new_tokens=64 or modalities.image.decoder.backend=pixart-sigma; VALUE is read as YAML",
    )
    parser.add_argument(
        "--commercial-only",
        action="store_true",
        help="refuse to build a model with a component whose licence permits no commercial use "
        "(as licence_policy=commercial does); restricted ones are listed with their restriction",
    )


def add_placement_arguments(parser: argparse.ArgumentParser) -> None:
    """``--device``, ``--dtype`` and ``--dry-run``: where `load_model_from_args` puts the model,
    and `memory_plan_requested` (see `nextgpt.memory`)."""
    from nextgpt.placement import DEVICE_NAMES

    parser.add_argument(
        "--device",
        default="auto",
        metavar="DEV",
        help=f"where the model runs: {', '.join(DEVICE_NAMES)} (default: auto, a GPU when there is one)",
    )
    parser.add_argument(
        "--dtype",
        default=None,
        metavar="TYPE",
        help="dtype of the frozen parts (LLM, encoders, decoders): float32, float16 or bfloat16 "
        "(default: the configuration's llm.dtype)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the memory plan (parameters and bytes of each component on its device, computed "
        "from the configuration without loading weights) and stop",
    )


def placement_from_args(args: argparse.Namespace) -> tuple[torch.device | None, torch.dtype | None]:
    """The device and dtype ``--device`` and ``--dtype`` name (None where a command has neither);
    a bad name or an absent GPU is a `ConfigError` naming the option (with ``--dry-run`` a GPU
    need not be here: the plan can be made for another machine)."""
    from nextgpt.dtypes import parse_dtype
    from nextgpt.placement import resolve_device

    present = not getattr(args, "dry_run", False)
    device = resolve_device(getattr(args, "device", None), "--device", present=present)
    return device, parse_dtype(getattr(args, "dtype", None), "--dtype")


def memory_plan_requested(
    args: argparse.Namespace, *, registry: PluginRegistry | None = None, modalities: Sequence[str] | None = None
) -> bool:
    """With ``--dry-run``: print the memory plan of the model the arguments name and return True
    (the command then stops); otherwise False."""
    if not getattr(args, "dry_run", False):
        return False
    from nextgpt.memory import memory_plan

    device, dtype = placement_from_args(args)
    config = planned_config_from_args(args, registry=registry, modalities=modalities)
    print(memory_plan(config, registry, device=device, torch_dtype=dtype).table())
    return True


def model_overrides(args: argparse.Namespace) -> Overrides:
    """The overrides ``--config``, ``--set`` and ``--commercial-only`` give, in that order."""
    from nextgpt.overrides import Overrides

    overrides = Overrides.from_file(args.config) if getattr(args, "config", None) else Overrides()
    overrides += Overrides.from_assignments(getattr(args, "settings", None) or [])
    if getattr(args, "commercial_only", False):
        overrides += Overrides.from_mapping({"licence_policy": "commercial"}, "--commercial-only")
    return overrides


def planned_config_from_args(
    args: argparse.Namespace, *, registry: PluginRegistry | None = None, modalities: Sequence[str] | None = None
) -> NextGPTConfig:
    """The configuration `load_model_from_args` would build, read without loading anything:
    the model name and every override are checked in a fraction of a second."""
    from nextgpt.overrides import planned_config

    return planned_config(args.model, model_overrides(args), registry, modalities)


def load_model_from_args(
    args: argparse.Namespace, *, registry: PluginRegistry | None = None, modalities: Sequence[str] | None = None
) -> NextGPTModel:
    """The model a command's ``--model``, ``--config`` and ``--set`` name (see
    `add_model_arguments`), built by ``NextGPTModel.from_pretrained``.

    The configuration is checked first, without loading anything (`planned_config_from_args`),
    so a typo costs a second, not a model load. ``modalities`` chooses a preset's modalities
    (default: every installed one); ``registry`` the plugins (default: the installed ones).

    Raises:
        ConfigError: an unknown model, an unreadable ``--config`` file, an override with an
            unknown key, a bad value, or one a model folder cannot take, a bad ``--device`` or
            ``--dtype`` or an absent GPU (one line, naming it).
    """
    from nextgpt.model import NextGPTModel

    overrides = model_overrides(args)
    device, dtype = placement_from_args(args)
    planned_config_from_args(args, registry=registry, modalities=modalities)
    return NextGPTModel.from_pretrained(
        args.model, registry=registry, modalities=modalities, overrides=overrides, device=device, torch_dtype=dtype
    )


# -- outputs ---------------------------------------------------------------------------------------


def add_out_argument(parser: argparse.ArgumentParser, default: str, what: str = "generated files") -> None:
    parser.add_argument(
        "--out",
        default=default,
        metavar="DIR",
        help=f"folder for the {what} (default: {default}); a name already taken gets -1, -2...: nothing is replaced",
    )


def add_seed_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=None, metavar="N", help=SEED_HELP)


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    """``--json [FILE]`` and ``--overwrite``: see `check_json_target` and `print_result`."""
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        default=None,
        metavar="FILE",
        help="the result as JSON: on standard output instead of the table, or written into FILE",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the --json FILE if it exists")


def check_json_target(args: argparse.Namespace) -> None:
    """Refuse a ``--json FILE`` that exists (without ``--overwrite``) or cannot be written, before
    the command does its work."""
    from nextgpt.files import check_new_file, check_writable_folder

    if args.json not in (None, "-"):
        check_new_file(Path(args.json), args.overwrite)
        check_writable_folder(Path(args.json).parent, "folder of --json")


def print_result(args: argparse.Namespace, data: Any, table: str) -> None:
    """The table on standard output, or the JSON there (``--json``), or the table and the JSON
    written into the ``--json FILE``."""
    if args.json == "-":
        print(json.dumps(data, indent=2))
        return
    print(table)
    if args.json is not None:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2))
        print(f"results written to {path}")


# -- runtime ---------------------------------------------------------------------------------------


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bars (they are shown on a terminal by default)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help=f"torch CPU threads (default: {ENV_THREADS}, OMP_NUM_THREADS, else the CPUs this process "
        "may use that other processes do not keep busy)",
    )


def apply_runtime_arguments(args: argparse.Namespace) -> None:
    """Set up progress bars and threads as the command line says (each command may have neither)."""
    from nextgpt.progress import set_progress
    from nextgpt.threads import configure_threads

    if getattr(args, "quiet", False):
        set_progress(False)
    configure_threads(getattr(args, "threads", None))
