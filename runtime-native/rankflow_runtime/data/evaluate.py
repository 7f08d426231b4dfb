"""Run a model over a ``TaskData``'s evaluation split and compute its metrics.

The model is called as ``model(input_ids=..., attention_mask=...)`` (``model(pixel_values=...)`` for images)
and may return the logits tensor itself, a dict with ``"logits"``, an object with ``.logits`` or a tuple whose
first element is the logits: ``[B, C]`` for classification / regression, ``[B, L, V]`` for causal LMs.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from .. import metrics as M
from .errors import DataError
from .types import IGNORE_INDEX, TaskData


def logits_of(output) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict) and "logits" in output:
        return output["logits"]
    if hasattr(output, "logits"):
        return output.logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"cannot find logits in a model output of type {type(output).__name__}")


def _forward(model, batch: dict, device) -> torch.Tensor:
    if "pixel_values" in batch:
        out = model(pixel_values=batch["pixel_values"].to(device))
    else:
        extra = {"token_type_ids": batch["token_type_ids"].to(device)} if "token_type_ids" in batch else {}
        out = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                    **extra)
    return logits_of(out)


def _batches(dataset, collate, batch_size: int, num_workers: int = 0):
    """Batches in dataset order; ``num_workers`` > 0 decodes examples (e.g. images) in worker processes."""
    if num_workers > 0:
        yield from torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate,
                                               num_workers=num_workers)
        return
    for start in range(0, len(dataset), batch_size):
        yield collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])


def _strip_eval_keys(example: dict) -> dict:
    return {k: v for k, v in example.items() if k != "prompt_length"}


@torch.no_grad()
def greedy_generate(model, prompts: Sequence[Sequence[int]], max_new_tokens: int, eos_id: Optional[int],
                    pad_id: int = 0, device="cpu", stop=None, max_length: Optional[int] = None) -> list[list[int]]:
    """Greedy decoding without a KV cache, batched with right padding.

    Every step runs the model on the batch, right-padded to the longest current sequence, and appends to each
    unfinished row the argmax of the logits at its own last position. Under a causal mask, padding to the right
    of a row never influences that row's positions, so rows of different lengths decode exactly as they would
    alone (position ids stay 0..len-1). A row stops at ``eos_id``, after ``max_new_tokens``, when ``stop``
    (a callable on the generated ids) says so, or at ``max_length`` total tokens. Returns the generated ids
    (without the prompt, without the EOS).
    """
    n = len(prompts)
    if n == 0:
        return []
    lengths = [len(p) for p in prompts]
    if min(lengths) == 0:
        raise ValueError("greedy_generate needs non-empty prompts")
    cap = max(lengths) + max_new_tokens
    if max_length is not None:
        cap = min(cap, max_length)
    buf = torch.full((n, cap), int(pad_id), dtype=torch.long)
    for i, p in enumerate(prompts):
        buf[i, : len(p)] = torch.as_tensor(list(p), dtype=torch.long)
    cur = torch.tensor(lengths, dtype=torch.long)
    done = torch.zeros(n, dtype=torch.bool)
    done |= cur >= cap
    generated: list[list[int]] = [[] for _ in range(n)]
    for _ in range(max_new_tokens):
        if bool(done.all()):
            break
        width = int(cur[~done].max())
        ids = buf[:, :width]
        mask = (torch.arange(width)[None, :] < cur[:, None]).long()
        logits = logits_of(model(input_ids=ids.to(device), attention_mask=mask.to(device)))
        last = (cur - 1).clamp(max=width - 1).to(logits.device)
        next_tok = logits[torch.arange(n, device=logits.device), last].float().argmax(dim=-1).cpu()
        for i in range(n):
            if done[i]:
                continue
            tok = int(next_tok[i])
            if eos_id is not None and tok == eos_id:
                done[i] = True
                continue
            buf[i, cur[i]] = tok
            cur[i] += 1
            generated[i].append(tok)
            if cur[i] >= cap or (stop is not None and stop(generated[i])):
                done[i] = True
    return generated


@torch.no_grad()
def hf_generate(model, prompts: Sequence[Sequence[int]], max_new_tokens: int, eos_id: Optional[int],
                pad_id: int = 0, device="cpu") -> list[list[int]]:
    """Greedy decoding through a ``transformers`` model's own ``generate`` (KV cache; left-padded prompts).
    Gives the same tokens as ``greedy_generate`` (stop strings are applied afterwards, which for greedy
    decoding is the same as stopping early); opt in with ``dataset.options.generation: hf``."""
    if not hasattr(model, "generate"):
        raise DataError("dataset.options.generation='hf' needs a model with a generate() method",
                        "use generation 'greedy' (the default) for built-in models")
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.as_tensor(list(p), dtype=torch.long)
        mask[i, width - len(p):] = 1
    out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
                         do_sample=False, eos_token_id=eos_id, pad_token_id=int(pad_id))
    result = []
    for row in out[:, width:].tolist():
        if eos_id is not None and eos_id in row:
            row = row[: row.index(eos_id)]
        result.append(row)
    return result


def _stop_on_strings(tokenizer, strings):
    def stop(ids: list[int]) -> bool:
        text = tokenizer.decode(ids)
        return any(s in text for s in strings)
    return stop


def _cut_at_stop(text: str, strings) -> str:
    cut = len(text)
    for s in strings:
        at = text.find(s)
        if at != -1:
            cut = min(cut, at)
    return text[:cut]


def generation_records(task_data: TaskData, outputs: Sequence[str]) -> list[dict]:
    """One record per evaluated example of a generative task: the prompt, the model's output, the answers the
    two metrics extract from it, the reference and whether each metric counts it correct (the data behind
    ``exact_match`` / ``exact_match_strict``)."""
    gen = task_data.generation or {}
    tok = task_data.tokenizer
    out = []
    for i, (text, ref) in enumerate(zip(outputs, gen.get("references", []))):
        ex = task_data.eval[i]
        prompt = tok.decode(ex["input_ids"][: int(ex["prompt_length"])].tolist()) if tok is not None else None
        gold = M.gsm8k_reference_answer(ref) if "####" in ref else M.gsm8k_normalize(ref)
        flex, strict = M.gsm8k_extract_flexible(text), M.gsm8k_extract_strict(text)
        out.append({"index": i, "prompt": prompt, "generation": text, "extracted": flex, "extracted_strict": strict,
                    "reference": ref, "reference_answer": gold, "correct": flex == gold,
                    "correct_strict": strict == gold})
    return out


@torch.no_grad()
def evaluate(model, task_data: TaskData, batch_size: int, device="cpu", max_new_tokens: Optional[int] = None,
             return_outputs: bool = False, num_workers: int = 0, progress=None) -> dict:
    """Evaluate ``model`` on ``task_data.eval`` and return ``{metric: value}`` for every name in
    ``task_data.metric_names`` (the model's train/eval mode is restored afterwards). For generative tasks
    ``max_new_tokens`` overrides the dataset's setting; with ``return_outputs`` the decoded generations are
    returned too, as ``(metrics, outputs)``. ``num_workers`` > 0 loads examples in DataLoader workers (useful
    for large image test sets). ``progress(done, total)`` is called after each batch of generations."""
    was_training = model.training
    model.eval()
    try:
        result, outputs = _evaluate(model, task_data, int(batch_size), device, max_new_tokens, int(num_workers),
                                    progress)
    finally:
        model.train(was_training)
    return (result, outputs) if return_outputs else result


def _evaluate(model, td: TaskData, batch_size: int, device, max_new_tokens, num_workers: int = 0, progress=None):
    names = td.metric_names
    data = td.eval
    if len(data) == 0:
        raise ValueError(f"the evaluation split of {td.name} is empty")
    if td.task == "img-gen":
        return _evaluate_generation(model, td, batch_size, device), None
    if td.task == "causal-lm":
        loss_sum, tok_count, correct = 0.0, 0, 0
        for batch in _batches_lm(data, td, batch_size):
            logits = _forward(model, batch, device).float()
            labels = batch["labels"].to(logits.device)
            shift_logits, shift_labels = logits[:, :-1, :], labels[:, 1:]
            valid = shift_labels != IGNORE_INDEX
            loss_sum += float(F.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]),
                                              shift_labels.reshape(-1), ignore_index=IGNORE_INDEX,
                                              reduction="sum"))
            tok_count += int(valid.sum())
            correct += int(((shift_logits.argmax(-1) == shift_labels) & valid).sum())
        loss = loss_sum / max(tok_count, 1)
        out = {"loss": loss}
        if "perplexity" in names:
            out["perplexity"] = float(math.exp(min(loss, 50.0)))
        if "token_accuracy" in names:
            out["token_accuracy"] = correct / max(tok_count, 1)
        outputs = None
        if td.kind == "generation":
            gen = td.generation or {}
            steps = int(max_new_tokens if max_new_tokens is not None else gen.get("max_new_tokens", 256))
            stops = tuple(gen.get("stop", ()))
            tok = td.tokenizer
            stop_fn = _stop_on_strings(tok, stops) if stops else None
            prompts = [data[i]["input_ids"][: int(data[i]["prompt_length"])].tolist() for i in range(len(data))]
            outputs = []
            for start in range(0, len(prompts), batch_size):
                if gen.get("backend") == "hf":
                    ids = hf_generate(model, prompts[start:start + batch_size], steps, tok.eos_id,
                                      pad_id=td.collate.pad_id, device=device)
                else:
                    ids = greedy_generate(model, prompts[start:start + batch_size], steps, tok.eos_id,
                                          pad_id=td.collate.pad_id, device=device, stop=stop_fn,
                                          max_length=gen.get("max_length"))
                outputs.extend(_cut_at_stop(tok.decode(g), stops) for g in ids)
                if progress is not None:
                    progress(len(outputs), len(prompts))
            out.update(M.gsm8k_exact_match(outputs, gen["references"]))
        return {k: v for k, v in out.items() if k in names}, outputs

    preds, golds, loss_sum, count = [], [], 0.0, 0
    for batch in _batches(data, td.collate, batch_size, num_workers):
        logits = _forward(model, batch, device).float()
        labels = batch["labels"].to(logits.device)
        if td.num_labels == 1:
            scores = logits.reshape(logits.shape[0], -1)[:, 0]
            loss_sum += float(F.mse_loss(scores, labels.float(), reduction="sum"))
            preds.extend(scores.cpu().tolist())
        else:
            loss_sum += float(F.cross_entropy(logits, labels.long(), reduction="sum"))
            preds.extend(logits.argmax(-1).cpu().tolist())
        golds.extend(labels.cpu().tolist())
        count += labels.shape[0]
    out = {"loss": loss_sum / count}
    if td.num_labels == 1:
        out.update(M.regression_metrics(preds, golds, names))
    else:
        out.update(M.classification_metrics(preds, golds, names))
    return {k: v for k, v in out.items() if k in names}, None


def _evaluate_generation(model, td: TaskData, batch_size: int, device) -> dict:
    """Conditional image generation: one sample per evaluation example, from noise drawn by a generator seeded
    with the data seed (the same noise at every evaluation), scored by the dataset's frozen classifiers
    (`content_style.scores`); the metrics are averages over the samples."""
    from . import content_style
    if not hasattr(model, "generate"):
        raise DataError(f"{td.name}: the model has no generate() for img-gen evaluation", "use tiny-denoiser")
    g = torch.Generator().manual_seed(int(td.info.get("sample_seed", 0)))
    sums: dict = {}
    n = 0
    for batch in _batches(td.eval, td.collate, batch_size):
        ref, labels = batch["pixel_values"], batch["labels"]
        noise = torch.randn(ref.shape, generator=g)
        images = model.generate(labels.to(device), noise.to(device)).float().cpu()
        for k, v in content_style.scores(images, labels[:, 0], labels[:, 1]).items():
            sums[k] = sums.get(k, 0.0) + v * len(labels)
        n += len(labels)
    return {k: v / n for k, v in sums.items() if k in td.metric_names}


def _batches_lm(data, td: TaskData, batch_size: int):
    for start in range(0, len(data), batch_size):
        yield td.collate([_strip_eval_keys(data[i]) for i in range(start, min(start + batch_size, len(data)))])
