"""Training-step throughput: `NextGPTLightningModule` under a Lightning `Trainer` vs a minimal
plain PyTorch loop doing the same math (encode, pack, forward, LM + alignment loss, backward,
clip, AdamW step) on the same tiny model and the same batches. Rounds alternate which loop runs
first (a shared CPU is noisy); prints steps/s per run and the median ratio (Lightning / plain).

    python benchmarks/train_throughput.py [--stage 3] [--steps 15] [--warmup 3] [--batch-size 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", type=int, default=3, choices=(1, 2, 3))
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--plugins", default="image,audio,video")
    parser.add_argument("--rounds", type=int, default=3, help="pairs of runs, alternating which goes first")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from lightning.pytorch import Callback, Trainer
    from nextgpt.data import DatasetSource, NextGPTDataset, collate_samples, pad_packed
    from nextgpt.data.synthetic import write_synthetic_dataset
    from nextgpt.plugins import load_plugins
    from nextgpt.training.losses import alignment_loss, lm_loss
    from nextgpt.training.module import NextGPTLightningModule
    from torch.utils.data import DataLoader

    plugins = args.plugins.split(",")
    registry = load_plugins(allow=plugins)
    specs = {name: registry.modality(name) for name in plugins}
    folder = tempfile.mkdtemp(prefix="nextgpt-bench-")
    paths = write_synthetic_dataset(folder, specs, per_modality=4)
    fmt, task = {1: ("pairs", "caption"), 2: ("pairs", "generate"), 3: ("instruction", "caption")}[args.stage]
    dataset = NextGPTDataset([DatasetSource(path=str(paths[fmt]), format=fmt, task=task)], specs)
    samples = [dataset[i % len(dataset)] for i in range(args.steps * args.batch_size)]
    loader = lambda: DataLoader(samples, batch_size=args.batch_size, shuffle=False, collate_fn=collate_samples)  # noqa: E731
    torch.set_num_threads(max(1, torch.get_num_threads()))

    def build() -> NextGPTLightningModule:
        module = NextGPTLightningModule("tiny", stage=args.stage, plugins=plugins, warmup_steps=0, schedule="constant")
        module.configure_model()
        return module

    # -- Lightning ----------------------------------------------------------------------------------
    def run_lightning() -> float:
        return _run_lightning(args, build, loader, Callback, Trainer)

    def run_plain() -> float:
        return _run_plain(args, build, loader, pad_packed, lm_loss, alignment_loss)

    print(f"stage {args.stage}, batch {args.batch_size}, {args.steps - args.warmup} timed steps after {args.warmup} warm-up "
          f"per run, CPU threads {torch.get_num_threads()}, {args.rounds} round(s) alternating the order")
    ratios = []
    for round_index in range(args.rounds):
        order = [("plain", run_plain), ("lightning", run_lightning)]
        if round_index % 2 == 1:
            order.reverse()
        rates = {name: fn() for name, fn in order}
        ratios.append(rates["lightning"] / rates["plain"])
        print(f"round {round_index + 1} ({' then '.join(n for n, _ in order)}): lightning {rates['lightning']:.2f} steps/s, "
              f"plain {rates['plain']:.2f} steps/s, ratio {ratios[-1]:.3f}")
    print(f"ratio (lightning / plain), median of {len(ratios)}: {statistics.median(ratios):.3f}")


def _run_lightning(args, build, loader, Callback, Trainer) -> float:  # noqa: ANN001, N803
    class Clock(Callback):
        def __init__(self) -> None:
            self.start = self.end = 0.0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):  # noqa: ANN001
            if batch_idx == args.warmup:
                self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):  # noqa: ANN001
            self.end = time.perf_counter()

    module = build()
    clock = Clock()
    trainer = Trainer(
        max_steps=args.steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=1.0, callbacks=[clock],
    )
    trainer.fit(module, loader())
    return (args.steps - args.warmup) / (clock.end - clock.start)


def _run_plain(args, build, loader, pad_packed, lm_loss, alignment_loss) -> float:  # noqa: ANN001
    module = build()
    model = module.model
    model.train()
    model.encoders.eval()
    optimizer = torch.optim.AdamW(module.parameter_groups(), lr=module.hparams.lr, betas=(0.9, 0.95))
    params = [p for group in optimizer.param_groups for p in group["params"]]
    targets: dict[tuple[str, str], torch.Tensor] = {}
    start = 0.0
    for step, batch in enumerate(loader()):
        if step == args.warmup:
            start = time.perf_counter()
        embeds: list[list[torch.Tensor]] = [[] for _ in batch.samples]
        for modality, entries in batch.media_by_modality().items():
            out = model.encode_media(modality, [item for _, _, item in entries])
            for (i, _, _), e in zip(entries, out, strict=True):
                embeds[i].append(e)
        packed = [model.pack(module.output_turns(s.turns), embeds[i], False) for i, s in enumerate(batch.samples)]
        padded = pad_packed(packed, model.tokenizer.pad_token_id, 512)
        result = model.llm(inputs_embeds=padded.embeds, attention_mask=padded.attention_mask, output_hidden_states=True, use_cache=False)
        loss = lm_loss(result.logits, padded.labels)
        if module.align_enabled:
            for modality, decoder in model.decoders.items():
                cond, rows = model.signal_conditions(result.hidden_states[-1], padded.input_ids, modality)
                keep = [k for k, r in enumerate(rows.tolist()) if modality in batch.samples[r].targets]
                if not keep:
                    continue
                caps = [batch.samples[int(rows[k])].targets[modality] for k in keep]
                for c in caps:
                    if (modality, c) not in targets:
                        with torch.no_grad():
                            targets[(modality, c)] = decoder.condition_from_text([c])[0]
                target = torch.stack([targets[(modality, c)] for c in caps])
                loss = loss + model.modality_configs[modality].loss_weight * alignment_loss(cond[keep], target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
    return (args.steps - args.warmup) / (time.perf_counter() - start)


if __name__ == "__main__":
    main()
