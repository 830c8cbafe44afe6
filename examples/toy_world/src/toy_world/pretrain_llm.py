"""The toy model's LLM: a byte-level BPE tokenizer and a tiny LLaMA pre-trained as a plain
language model on the world's text (captions, requests, answers, questions; never media or
signal tokens), the stand-in for Vicuna."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from nextgpt.progress import bar
from torch import nn

from toy_world import world as W
from toy_world.generate import ANSWERS, CAPTION_QUESTIONS, REQUESTS, text_questions
from toy_world.settings import (
    STAGE1_PROMPT,
    BuildBudget,
    ToyArchitecture,
)


def world_texts(captions: dict[str, list[str]], seed: int = 0) -> list[list[tuple[str, str]]]:
    """The LLM's pre-training dialogues, as (human, gpt) turn lists, built from ``captions``
    (modality -> captions; the build passes every caption of the world): captioning questions,
    requests answered in words, text-only questions, and the MosIT dialogues' text. Media and
    signal tokens are never part of it: the LLM is a text model."""
    rng = random.Random(f"{seed}-llm-corpus")
    dialogues: list[list[tuple[str, str]]] = []
    for m, caps in captions.items():
        for caption in caps:
            concept = W.concept_from_caption(m, caption)
            dialogues.append([(STAGE1_PROMPT, caption)])
            for question in CAPTION_QUESTIONS[m]:
                dialogues.append([(question, f"It is {caption}.")])
            for request in REQUESTS[m]:
                dialogues.append([(request.format(c=caption), rng.choice(ANSWERS).format(c=caption))])
            for question, answer in text_questions(concept):
                dialogues.append([(question, answer)])
            dialogues.append(
                [
                    (rng.choice(REQUESTS[m]).format(c=caption), rng.choice(ANSWERS).format(c=caption)),
                    rng.choice(text_questions(concept)),
                ]
            )
    rng.shuffle(dialogues)
    return dialogues


def render_text(dialogue: Sequence[tuple[str, str]], template_name: str = "vicuna_v0") -> str:
    from nextgpt.templates import Turn, get_template

    turns = [Turn(role=r, text=t) for human, gpt in dialogue for r, t in (("user", human), ("assistant", gpt))]
    return get_template(template_name).render(turns, add_generation_prompt=False)


def render_ids(tokenizer: Any, dialogue: Sequence[tuple[str, str]], template_name: str = "vicuna_v0") -> list[int]:
    """Token ids of a text dialogue exactly as `NextGPTModel.pack` builds them: BOS, then each
    template segment tokenized on its own."""
    from nextgpt.templates import Turn, get_template

    turns = []
    for human, gpt in dialogue:
        turns += [Turn(role="user", text=human), Turn(role="assistant", text=gpt)]
    ids = [tokenizer.bos_token_id]
    for segment in get_template(template_name).segments(turns, add_generation_prompt=False):
        ids += tokenizer(segment.text, add_special_tokens=False).input_ids
    return ids


def pretrain_llm(
    tokenizer: Any,
    dialogues: list[list[tuple[str, str]]],
    arch: ToyArchitecture,
    budget: BuildBudget,
    seed: int,
    log: Callable[[str], None] = print,
) -> tuple[nn.Module, dict[str, float]]:
    """A tiny LLaMA trained as a plain language model on the rendered dialogues."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=arch.hidden_size,
        intermediate_size=arch.intermediate_size,
        num_hidden_layers=arch.num_layers,
        num_attention_heads=arch.num_heads,
        num_key_value_heads=arch.num_heads,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
        sequences = [torch.tensor(render_ids(tokenizer, d)) for d in dialogues]
        optimizer = torch.optim.AdamW(model.parameters(), lr=budget.llm_lr, betas=(0.9, 0.98), weight_decay=0.01)
        warmup = max(1, budget.llm_steps // 20)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min((s + 1) / warmup, max(0.05, 1 - s / budget.llm_steps))
        )
        generator = torch.Generator().manual_seed(seed)
        model.train()
        losses = []
        steps = bar(total=budget.llm_steps, desc="toy LLM pre-training", unit="step")
        for step in range(budget.llm_steps):
            picks = torch.randint(len(sequences), (budget.llm_batch,), generator=generator).tolist()
            batch = [sequences[i] for i in picks]
            width = max(len(s) for s in batch)
            ids = torch.full((len(batch), width), tokenizer.pad_token_id)
            labels = torch.full((len(batch), width), -100)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, seq in enumerate(batch):
                ids[row, : len(seq)] = seq
                labels[row, : len(seq)] = seq
                mask[row, : len(seq)] = 1
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            steps.update(1)
            if (step + 1) % 10 == 0:
                steps.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
        steps.close()
    model.eval()
    return model, {"final_loss": float(np.mean(losses[-50:])), "steps": budget.llm_steps}
