"""The default training plugin: the Hugging Face Trainer, set up to be fast and honest.

One checkpoint per epoch (never every few steps), dynamic padding with
length-grouped batches, bf16 where the hardware runs it fast, fast dropout
masks on the CPU, model selection on the validation split with early
stopping and the best epoch restored.
Works unchanged under ``torchrun`` and ``accelerate launch``.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from toolkit import hookimpl
from toolkit.training.device import attention_kernel, use_bf16
from toolkit.records import EpochRecord, TrainResult
from toolkit.training.policy import best_epoch, group_by_length, out_of_memory

SELECT_KEYS = {"loss": ("eval_loss", False), "accuracy": ("eval_accuracy", True), "f1": ("eval_f1", True)}


@hookimpl(trylast=True)
def tk_train(model, tokenizer, splits, task, run_dir: Path, progress, compute_metrics, resume):
    import numpy as np
    import torch
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    from plugins.engines.trainer.fast_dropout import fast_dropout
    from plugins.engines.trainer.callback import ReportCallback

    metric, greater_is_better = SELECT_KEYS[task.select_metric]
    bf16 = use_bf16(task.bf16)
    grouped = group_by_length(task, splits["train"]["length"])
    attention = attention_kernel(task.attention, bf16)
    if attention:
        model.set_attn_implementation(attention)
    args = TrainingArguments(
        output_dir=str(run_dir / "checkpoints"),
        num_train_epochs=task.epochs,
        per_device_train_batch_size=task.batch_size,
        per_device_eval_batch_size=task.eval_batch_size,
        learning_rate=task.learning_rate,
        weight_decay=task.weight_decay,
        warmup_steps=task.warmup_ratio,  # a float below 1 is a share of all steps
        lr_scheduler_type=task.lr_scheduler,
        seed=task.seed,
        bf16=bf16,
        use_cpu=not torch.cuda.is_available(),
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="epoch",
        save_total_limit=1,  # the best checkpoint is always kept too
        load_best_model_at_end=True,
        metric_for_best_model=metric,
        greater_is_better=greater_is_better,
        train_sampling_strategy="group_by_length" if grouped else "random",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    collator = DataCollatorWithPadding(
        tokenizer,
        padding="longest" if task.dynamic_padding else "max_length",
        max_length=None if task.dynamic_padding else task.max_length,
    )

    def epoch_metrics(prediction):
        logits = prediction.predictions
        probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        return compute_metrics(prediction.label_ids, probabilities)

    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=splits["train"],
        eval_dataset=longest_first(splits["validation"]),
        data_collator=collator,
        compute_metrics=epoch_metrics,
        callbacks=[ReportCallback(progress)],
    )
    trainer.remove_callback(PrinterCallback)  # our table replaces its raw log dicts
    if task.patience:
        trainer.add_callback(EarlyStoppingCallback(early_stopping_patience=task.patience))
    on_cpu = not torch.cuda.is_available()
    started = time.perf_counter()
    try:
        with fast_dropout(model) if task.fast_dropout and on_cpu else contextlib.nullcontext():
            trainer.train(resume_from_checkpoint=resume or None)
    except (torch.OutOfMemoryError, MemoryError) as error:
        raise out_of_memory(task, error) from None
    finally:
        progress.close()
    history = [EpochRecord(**entry["tk_epoch"]) for entry in trainer.state.log_history if "tk_epoch" in entry]
    return TrainResult(
        model=trainer.model,
        history=history,
        best_epoch=best_epoch(history, task.select_metric),
        train_seconds=time.perf_counter() - started,
        extra={"bf16": bf16, "group_by_length": grouped, "attention": model.config._attn_implementation,
               "fast_dropout": task.fast_dropout and on_cpu,
               "global_steps": trainer.state.global_step, "train_seconds_total": sum(r.seconds for r in history)},
    )


def longest_first(split):
    """Rows by falling length: each evaluation batch carries little padding (metrics do not depend on order)."""
    import numpy as np

    return split.select(np.argsort(-np.asarray(split["length"]), kind="stable"))
