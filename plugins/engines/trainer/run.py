"""One training run through the Trainer, imported only when training starts (it needs transformers)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import SequentialSampler
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments
from transformers.trainer_callback import PrinterCallback

from plugins.engines.trainer.callback import PolicyCallback
from plugins.engines.trainer.embedding_gradient import reused_embedding_gradient
from plugins.engines.trainer.fast_dropout import fast_dropout
from toolkit.api import TrainResult, attention_kernel, checkpoints, column, policy, rows_per_batch, use_bf16


class PolicyTrainer(Trainer):
    """The Trainer with the loss, optimizer and schedule of the training policy; it keeps each step's loss."""

    loss_is_scaled_for_ga = False  # training_loss is a per-batch mean, never normalised by num_items_in_batch

    def __init__(self, *args, task, step_losses: list, loss_weights=None, checkpoint_state=None, **kwargs) -> None:
        self.task, self.step_losses, self.loss_weights = task, step_losses, loss_weights
        self.checkpoint_state = checkpoint_state  # the policy state each checkpoint commits
        self.embedding_gradient = None  # a ReusedEmbeddingGradient while one is open
        self.staging_root: Path | None = None  # where the Trainer writes the checkpoint being saved
        super().__init__(*args, **kwargs)
        # compute_loss returns this device's batch mean: the Trainer must neither pass num_items_in_batch
        # nor rescale the loss by the number of processes (DistributedDataParallel averages the gradients).
        self.model_accepts_loss_kwargs = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The policy's loss (cross-entropy with class_weights, or multi-label BCE), not the model's own."""
        outputs = model(**{key: value for key, value in inputs.items() if key != "labels"})
        weights = None if self.loss_weights is None else self.loss_weights.to(outputs.logits.device)
        loss = policy.training_loss(outputs.logits, inputs["labels"], self.task, weights)
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.step_losses.append(loss.detach())  # a device tensor: read once an epoch, no sync per step
        return loss

    def _clip_grad_norm(self, model):
        """One process on the CPU: clip only when the norm exceeds the limit (same numbers, one pass fewer)."""
        if self.args.world_size > 1 or torch.cuda.is_available() or self.args.fp16:
            return super()._clip_grad_norm(model)
        gradient = self.embedding_gradient
        return policy.clip_gradients_if_needed(model.parameters(), gradient.rows_of() if gradient else None)

    def _get_eval_sampler(self, eval_dataset):
        """The validation rows in their own order (already longest first). Under group_by_length the Trainer
        would shuffle them in length groups, and a chunked task's windows would fall out of line with the
        documents the policy pools them by."""
        if eval_dataset is None or self.args.world_size > 1:
            return None  # several processes: accelerate shards the rows in order
        return SequentialSampler(eval_dataset)

    def _get_output_dir(self, trial) -> str:
        return str(self.staging_root) if self.staging_root is not None else super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        """The Trainer's files written into a staging folder, then committed whole (fsynced, renamed into
        place); an error removes the staging folder and the previous checkpoint stays the resume point."""
        folder, name = Path(self.args.output_dir), f"{checkpoints.PREFIX}{self.state.global_step}"
        main, several = self.is_world_process_zero(), self.args.world_size > 1

        def trainer_files(staged: Path) -> None:
            if several:
                torch.distributed.barrier()  # the staging folder exists before any process writes into it
            self.staging_root = staged.parent
            try:
                super(PolicyTrainer, self)._save_checkpoint(model, trial)
            finally:
                self.staging_root = None
            if several:
                torch.distributed.barrier()  # every process's RNG file is written before the commit

        if main:
            checkpoints.write(folder, name, trainer_files, self.checkpoint_state())
        else:
            trainer_files(folder / f"{checkpoints.PARTIAL}{name}" / name)

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            self.optimizer = policy.build_optimizer(model or self.model, self.task)
        return self.optimizer

    def create_scheduler(self, num_training_steps, optimizer=None):
        if self.lr_scheduler is None:
            self.lr_scheduler = policy.build_scheduler(optimizer or self.optimizer, self.task, num_training_steps)
        return self.lr_scheduler


# On the CPU each batch width a run meets for the first time costs oneDNN about 47 ms of kernel creation in a
# MiniLM step (16 x 20-60 tokens, bf16), and Sentiment140's length-grouped batches meet about 55 widths, more
# kernels than its cache keeps. Widths in steps of 4 tokens: Sentiment140 runs 34.0-35.6 s instead of
# 36.6-38.0 s on a 2-core Xeon with AMX, the 1.5 extra padded tokens per batch included (benchmarks/NOTES.md).
CPU_WIDTH_STEP = 4


class RoundedWidthPadding:
    """Each batch padded to its longest text rounded up to ``width_step`` tokens, at most ``max_width``
    (the padded positions are masked: the same answers as padding to the longest)."""

    def __init__(self, tokenizer, width_step: int, max_width: int) -> None:
        self.tokenizer, self.width_step, self.max_width = tokenizer, width_step, max_width

    def __call__(self, features: list[dict]) -> dict:
        longest = max(len(feature["input_ids"]) for feature in features)
        width = max(longest, min(self.max_width, -(-longest // self.width_step) * self.width_step))
        return DataCollatorWithPadding(self.tokenizer, padding="max_length", max_length=width)(features)


def train(model, tokenizer, splits, task, run_dir: Path, progress, compute_metrics, resume: bool) -> TrainResult:
    bf16 = use_bf16(task.bf16)
    grouped = policy.group_by_length(task, column(splits["train"], "length"))
    attention = attention_kernel(task.attention, bf16)
    if attention:
        model.set_attn_implementation(attention)
    folder = run_dir / "checkpoints"
    resume_from = checkpoints.latest(folder) if resume else None
    on_cpu = not torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=str(folder),
        num_train_epochs=task.epochs,
        per_device_train_batch_size=task.batch_size,
        per_device_eval_batch_size=rows_per_batch(task.eval_batch_size, "cpu" if on_cpu else "cuda",
                                                  task.max_length),
        learning_rate=task.learning_rate,
        max_grad_norm=policy.MAX_GRAD_NORM,
        seed=task.seed,
        bf16=bf16,
        use_cpu=on_cpu,
        eval_strategy="epoch",
        save_strategy="epoch",  # the policy callback commits each checkpoint and prunes the older ones
        logging_strategy="epoch",
        train_sampling_strategy="group_by_length" if grouped else "random",
        report_to="none",  # the task's report_to is honoured by tk's run pipeline, alike for every engine
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    if not task.dynamic_padding:
        collator = DataCollatorWithPadding(tokenizer, padding="max_length", max_length=task.max_length)
    else:
        collator = RoundedWidthPadding(tokenizer, CPU_WIDTH_STEP if on_cpu else 1, task.max_length)
    step_losses: list = []
    validation = longest_first(splits["validation"])
    weights = policy.loss_weights(task, model, splits["train"])
    callback = PolicyCallback(task, progress, compute_metrics, folder, resume_from, step_losses,
                              documents=policy.validation_documents(validation),
                              weights=None if weights is None else weights.cpu().numpy())
    trainer = PolicyTrainer(
        model=model,
        args=args,
        train_dataset=splits["train"],
        eval_dataset=validation,
        data_collator=collator,
        compute_metrics=callback.keep_validation_predictions,
        callbacks=[callback],
        task=task,
        step_losses=step_losses,
        loss_weights=weights,
        checkpoint_state=callback.checkpoint_state,
    )
    trainer.remove_callback(PrinterCallback)  # our table replaces its raw log dicts
    started = time.perf_counter()
    dropout = task.setting("fast_dropout") and on_cpu
    one_cpu_process = on_cpu and args.world_size == 1
    try:
        with (fast_dropout(model) if dropout else contextlib.nullcontext(),
              (reused_embedding_gradient(model) if one_cpu_process else contextlib.nullcontext()) as gradient):
            trainer.embedding_gradient = gradient
            trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except (torch.OutOfMemoryError, MemoryError) as error:
        raise policy.out_of_memory(task, error) from None
    finally:
        progress.close()
    trainer.model.load_state_dict(callback.best_weights)
    selection = callback.selection
    return TrainResult(
        model=trainer.model,
        history=selection.history,
        best_epoch=selection.best_epoch,
        train_seconds=time.perf_counter() - started,
        extra={"bf16": bf16, "group_by_length": grouped, "attention": model.config._attn_implementation,
               "fast_dropout": dropout, "global_steps": trainer.state.global_step,
               "train_seconds_total": sum(r.seconds for r in selection.history)},
    )


def longest_first(split):
    """Rows by falling length: each evaluation batch carries little padding (metrics do not depend on order)."""
    return split.select(np.argsort(-np.asarray(column(split, "length")), kind="stable"))
