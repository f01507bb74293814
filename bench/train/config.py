"""Training hyper-parameters every model has (each model declares its own defaults for them)."""
from bench.params import Param
from bench.train.adagrad import ADAGRAD_FORMS
from bench.train.adamw import ADAMW_FORMS
from bench.train.optim import OPTIMIZERS

EVAL_SCHEDULES = ("copf", "every", "final")

TRAIN_PARAMS = (
    Param("epochs", 200, "training epochs (the paper protocol's schedule length)", int, low=0),
    Param("lr", 1e-3, "Adam learning rate", float, low=0.0, low_open=True, batchable=True),
    Param("lr_decay", 0.96, "staircase decay factor of the learning rate (1 = none)", float,
          low=0.0, high=1.0, low_open=True, batchable=True),
    Param("optimizer", "adam", "update rule: adam (PyTorch's Adam), adam-tf1 (TensorFlow 1's "
          "epsilon-hat form, as the COPF/PKEF/CIGF releases run) or adagrad-tf1 (TensorFlow 1's "
          "Adagrad, as the NMTR release runs; its model declares initial_accumulator) or adamw "
          "(PyTorch's AdamW with clipping and an epoch CyclicLR, as the CML release runs; its "
          "model declares weight_decay, clip_norm, cyclic_max_lr, cyclic_epochs)", str,
          choices=OPTIMIZERS + ADAGRAD_FORMS + ADAMW_FORMS),
    Param("decay_steps", 0, "optimizer steps per decay; 0 = the TF family's users // batch_size",
          int, low=0),
    Param("batch_size", 256, "users per step (multi-behavior sampler) or triples per step (bpr)",
          int, low=1),
    Param("sampler", "multi-behavior", "training sampler (see bench.train.samplers.SAMPLERS)", str),
    Param("n_pairs", 40, "multi-behavior sampler: positives (and negatives) per user and behavior",
          int, low=1),
    Param("users_per_epoch", 0, "multi-behavior sampler: users drawn per epoch; 0 = all (COPF), "
          "10000 = the PKEF/CIGF harness", int, low=0),
    Param("eval_schedule", "copf", "paper protocol test epochs: copf (ep % 3 == 0 and (ep > 90 or "
          "ep < 2), plus the end), every (each eval_every epochs), final", str, choices=EVAL_SCHEDULES),
    Param("eval_every", 5, "epochs between evaluations (schedule 'every' and the honest protocol)",
          int, low=1),
    Param("patience", 10, "honest protocol: evaluations without improvement before stopping",
          int, low=1),
)
