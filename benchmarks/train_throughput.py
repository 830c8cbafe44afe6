"""Training-step throughput: `NextGPTLightningModule` under a Lightning `Trainer` vs a minimal
plain PyTorch loop doing the same math (encode, pack, forward, LM + alignment loss, backward,
clip, AdamW step) on the same tiny model and the same batches.

One run, interleaved step by step so both loops see the same machine load (a shared CPU is
noisy): after each Lightning step, a callback runs one plain step on the same batch with its own
model and optimizer. A Lightning step's time is the wall time from one ``on_train_batch_start``
to the next, minus the plain step run in between, so Lightning's own overhead (data fetching,
hooks, logging, clipping, the optimizer closure) is counted. Prints steps/s of each and the ratio.

    python benchmarks/train_throughput.py [--stage 3] [--steps 40] [--warmup 5] [--batch-size 4] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from typing import Any

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", type=int, default=3, choices=(1, 2, 3))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--plugins", default="image,audio,video")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from lightning.pytorch import Callback, Trainer
    from nextgpt.data import DatasetSource, NextGPTDataset, collate_samples
    from nextgpt.data.synthetic import write_synthetic_dataset
    from nextgpt.plugins import load_plugins
    from nextgpt.training.module import NextGPTLightningModule
    from torch.utils.data import DataLoader

    plugins = args.plugins.split(",")
    registry = load_plugins(allow=plugins)
    specs = {name: registry.modality(name) for name in plugins}
    paths = write_synthetic_dataset(tempfile.mkdtemp(prefix="nextgpt-bench-"), specs, per_modality=4)
    fmt, task = {1: ("pairs", "caption"), 2: ("pairs", "generate"), 3: ("instruction", "caption")}[args.stage]
    dataset = NextGPTDataset([DatasetSource(path=str(paths[fmt]), format=fmt, task=task)], specs)
    samples = [dataset[i % len(dataset)] for i in range(args.steps * args.batch_size)]

    def build() -> NextGPTLightningModule:
        module = NextGPTLightningModule("tiny", stage=args.stage, plugins=plugins, warmup_steps=0, schedule="constant")
        module.configure_model()
        return module

    plain = PlainLoop(build())

    class Interleave(Callback):
        def __init__(self) -> None:
            self.starts: list[float] = []
            self.plain: list[float] = []

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            self.starts.append(time.perf_counter())

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            self.plain.append(plain.step(batch))

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            self.starts.append(time.perf_counter())

    clock = Interleave()
    trainer = Trainer(
        max_steps=args.steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        gradient_clip_val=1.0,
        callbacks=[clock],
    )
    loader = DataLoader(samples, batch_size=args.batch_size, shuffle=False, collate_fn=collate_samples)
    trainer.fit(build(), loader)

    spans = [b - a for a, b in zip(clock.starts, clock.starts[1:], strict=False)]
    lightning = [span - p for span, p in zip(spans, clock.plain, strict=True)][args.warmup :]
    plain_times = clock.plain[args.warmup :]
    ratios = [p / light for p, light in zip(plain_times, lightning, strict=True)]
    print(
        f"stage {args.stage}, batch {args.batch_size}, {len(lightning)} timed steps of each after {args.warmup} "
        f"warm-up, interleaved, CPU threads {torch.get_num_threads()}"
    )
    for name, times in (("lightning", lightning), ("plain", plain_times)):
        median_ms = 1000 * statistics.median(times)
        print(f"{name + ':':<10} {len(times) / sum(times):.2f} steps/s (median step {median_ms:.1f} ms)")
    print(
        f"ratio (lightning / plain steps/s): total {sum(plain_times) / sum(lightning):.3f}, "
        f"median of per-step ratios {statistics.median(ratios):.3f}"
    )


class PlainLoop:
    """The same training step without Lightning: its own copy of the model and optimizer."""

    def __init__(self, module: Any) -> None:
        self.module = module
        self.model = module.model
        self.model.train()
        self.model.encoders.eval()
        self.optimizer = torch.optim.AdamW(module.parameter_groups(), lr=module.hparams.lr, betas=(0.9, 0.95))
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.targets: dict[tuple[str, str], Any] = {}

    def step(self, batch: Any) -> float:
        from nextgpt.conditions import Condition
        from nextgpt.data import pad_packed
        from nextgpt.training.losses import alignment_loss, lm_loss

        start = time.perf_counter()
        model, module = self.model, self.module
        embeds: list[list[torch.Tensor]] = [[] for _ in batch.samples]
        for modality, entries in batch.media_by_modality().items():
            out = model.encode_media(modality, [item for _, _, item in entries])
            for (i, _, _), e in zip(entries, out, strict=True):
                embeds[i].append(e)
        packed = [model.pack(module.output_turns(s.turns), embeds[i], False) for i, s in enumerate(batch.samples)]
        padded = pad_packed(packed, model.tokenizer.pad_token_id, 512)
        result = model.llm(
            inputs_embeds=padded.embeds,
            attention_mask=padded.attention_mask,
            output_hidden_states=True,
            use_cache=False,
        )
        loss = lm_loss(result.logits, padded.labels)
        if module.align_enabled:
            for modality, decoder in model.decoders.items():
                cond, rows = model.signal_conditions(result.hidden_states[-1], padded.input_ids, modality)
                keep = [k for k, r in enumerate(rows.tolist()) if modality in batch.samples[r].targets]
                if not keep:
                    continue
                caps = [batch.samples[int(rows[k])].targets[modality] for k in keep]
                for c in caps:
                    if (modality, c) not in self.targets:
                        with torch.no_grad():
                            self.targets[(modality, c)] = decoder.condition_from_text([c])
                target = Condition.cat(self.targets[(modality, c)] for c in caps)
                weight = model.modality_configs[modality].loss_weight
                loss = loss + weight * alignment_loss(cond.select(keep), target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        return time.perf_counter() - start


if __name__ == "__main__":
    main()
