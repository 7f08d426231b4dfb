"""rankflow native runtime: PEFT methods, models, training loop, checkpoints (run as a child process).

Command line (`python -m rankflow_runtime ...`); stdout carries JSON only, logs go to stderr:

* `run --spec run.json --out DIR [--resume CKPT_DIR]`: trains; JSON-lines events (`schemas/events.ts`):
  started, progress, eval, checkpoint (DIR/checkpoints/step-NNNNNNNN, the last two kept), preempted, done,
  error. DIR/best/ holds the adapter of the best evaluation. A top-level `run_id` in the spec is ignored.
* `count --spec run.json` -> `{"trainable", "total", "formula", "final", "exact"}` (`exact` false: an estimate,
  the method chooses ranks from the weights); `count --specs specs.json` -> a JSON array of those. Built on the meta device (no weights, no GPU).
* `describe` -> `{runtime, torch, methods, models, datasets}` with every option schema.
* `smoke --out DIR`: a two-layer MLP, 20 steps on the CPU; events started, progress x4, checkpoint, done;
  writes DIR/smoke.safetensors.
* `export --spec run.json --checkpoint CKPT_DIR --out DIR [--pissa-mode lora|residual]`: the checkpoint's
  adapter in Hugging Face PEFT format (`export_peft.py`); one `exported` event (step, method, peft_type, r,
  path, files).

Exit codes: 0 ok; 2 config/data/nan error (never retried); 3 retryable (oom, internal); 4 preempted
(SIGTERM: checkpoint written at the end of the current step, `preempted` event, exit).

Modules: `methods/` (registry, one file per method; see methods/base.py for how to add one), `models/`
(built-in tiny models, Hugging Face models), `data/` and `metrics.py` (datasets, evaluation), `train.py`
(the loop), `checkpoint.py`, `spec.py`, `events.py`, `errors.py`, `cli.py`, `build.py`.
"""
__version__ = "0.1.0"
