"""The Hugging Face Trainer as a training engine: CPU, one GPU, or several processes under torchrun.

It runs the steps; every decision comes from the shared training policy
(``toolkit.api.policy``: optimizer, schedule, clipping, validation
loss, best epoch, early stopping), taken in a callback, so it decides as
every other engine does. One checkpoint per epoch, never every few steps;
dynamic padding with length-grouped batches; bf16 where the hardware runs
it fast; on the CPU dropout masks from PCG64 and bf16-resident attention
(its own task key ``fast_dropout``) and one word-embedding gradient buffer.
"""

from __future__ import annotations

from toolkit.api import EngineInfo, Setting, hookimpl

NAME = "trainer"


@hookimpl
def tk_register_engines(register):
    register(EngineInfo(NAME, "the Hugging Face Trainer: CPU, GPU, torchrun / accelerate launch",
                        resume_required=("model.safetensors",),
                        resume_files=("optimizer.pt", "scheduler.pt", "rng_state*.pth", "trainer_state.json")))


@hookimpl
def tk_register_settings(register):
    register(Setting(
        "fast_dropout", (bool,), True,
        "trainer engine, on the CPU: draw dropout masks from NumPy's PCG64 instead of torch's "
        "one-number-at-a-time generator, for faster training steps: the same Bernoulli masks (drop probability "
        "rounded to 1/65536); with eager attention it also keeps the attention probabilities in bf16 and gives "
        "dropout's output in float32 under autocast (docs/speed.md); `false` keeps torch's dropout and "
        "transformers' attention"))


@hookimpl
def tk_train(model, tokenizer, splits, task, run_dir, progress, compute_metrics, resume, engine):
    if engine != NAME:
        return None
    from plugins.engines.trainer.run import train

    return train(model, tokenizer, splits, task, run_dir, progress, compute_metrics, resume)
