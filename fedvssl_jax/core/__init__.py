"""The trainer core shared by every task runner and evaluation (the floor below the tasks).

Modules (each imports only `fedvssl_jax.errors`, `config_utils` and `input_pipeline` from this project):
  mesh           make_mesh(config.mesh), batch / replicated shardings, host batch -> global array
  distributed    joining a multi-process job, primary-first / sync, per-process eval shards, gathers
  optim          SGD / AdamW chains and schedules from config.optim
  state          functional train state (graphdef + params / rest / opt_state), the jitted step
  checkpointing  Orbax CheckpointManager: state + data iterator + config, resume
  metrics        progress line, TensorBoard, metrics.jsonl
  prefetch       host -> device prefetch (batches in flight, checkpoint-exact data position)
  loop           the step loop shared by the runners (resume, log, checkpoint, early stop)
tests/test_layering.py holds the layer order that keeps it below the tasks.
"""
