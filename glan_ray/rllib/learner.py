"""What our torch learners share: one fused finite check of the gradients per update, and
metrics logged once per ``train()`` call.

RLlib's ``TorchLearner.apply_gradients`` checks every parameter's gradient for nan/inf twice per
update (``torch.isfinite(grad).all()`` per parameter, before and at the optimizer step): two
small kernels and a host sync per parameter tensor, about a fifth of a small model's update on
a CPU (``bench/training_limits.py``'s profile). ``FusedFiniteCheck`` keeps the same guard with
one check over all the gradients (their total norm is finite exactly when every gradient is),
and the configs set ``torch_skip_nan_gradients`` so RLlib's own checks are skipped. On a
non-finite gradient it does what RLlib's default does: warns and zeroes the nan/inf entries.

``MeanPerTrain`` sums a learner's per-update metrics as tensors (no host sync) and hands their
mean to RLlib's metrics logger once per ``train()`` call (``dataset_num_iters_per_learner``
updates): the same figure as logging every update with a window of that many, without the
logger's per-value bookkeeping on every update (about 7% of a CQL update on a CPU).

``ReplayBatches`` keeps the minibatches of the first pass over the learner's data (torch
tensors on the learner's device) and replays them, in the same order, in later passes: the
order Ray Data gives every pass over materialised pre-learned data, without its batching and
tensor conversion, nor its prefetch thread competing with the update for the cores, on every
minibatch. The first pass streams from Ray Data as before, so a cluster's learners read their
shards the same way; ``replay_batches=False`` streams every pass (data beyond a learner's
memory).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

logger = logging.getLogger(__name__)


class FusedFiniteCheck:
    """Mixin for a ``TorchLearner``: one nan/inf check of all the gradients per update."""

    def apply_gradients(self, gradients_dict: dict[Any, torch.Tensor]) -> None:
        grads = [g for g in gradients_dict.values() if g is not None]
        if grads and not bool(torch.isfinite(torch.nn.utils.get_total_norm(grads))):
            logger.warning("gradients contain nan/inf values: setting them to zero")
            gradients_dict = {
                k: None if g is None else torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
                for k, g in gradients_dict.items()
            }
        # a mixin: the TorchLearner after it in the MRO has apply_gradients, object does not
        super().apply_gradients(gradients_dict)  # type: ignore[misc]


class MeanPerTrain:
    """Mixin for a learner: ``log_mean(module_id, values)`` on every update; the means over each
    ``train()`` call's updates reach ``self.metrics`` at its last update."""

    # the Learner's, that this mixes into (annotations only: no class attribute shadows them)
    config: Any
    """The Learner's AlgorithmConfig."""
    metrics: Any
    """The Learner's MetricsLogger."""

    def log_mean(self, module_id: str, values: dict[str, torch.Tensor]) -> None:
        sums: dict[str, torch.Tensor] = self.__dict__.setdefault("_mean_sums", {})
        for k, v in values.items():
            v = v.detach()
            sums[k] = sums[k] + v if k in sums else v.clone()
        n = self.__dict__.get("_mean_n", 0) + 1
        per_train = int(self.config.dataset_num_iters_per_learner or 1)
        if n >= per_train:
            self.metrics.log_dict({k: v / n for k, v in sums.items()}, key=module_id, window=1)
            sums.clear()
            n = 0
        self._mean_n = n


class _Replay:
    """Minibatches for ``Learner.update``: ``num_iters`` per call, resuming where the last call
    stopped; the first pass from the Ray Data iterator (kept), the later ones from memory."""

    def __init__(self, stream: Any, num_iters: int) -> None:
        self._stream = iter(stream)  # (B, ...) torch batches, as RLlib's iterator makes them
        self._kept: list[Any] = []
        self._pos = 0
        self._num_iters = num_iters
        self.complete = False  # the first pass has ended; every later batch is a replay

    def __iter__(self) -> Any:
        for _ in range(self._num_iters):
            yield self._next()

    def _next(self) -> Any:
        if not self.complete:
            try:
                batch = _multi_agent(next(self._stream))
                self._kept.append(batch)
                return batch
            except StopIteration:
                self.complete = True
                if not self._kept:
                    raise ValueError("the learner's data iterator yielded no batch") from None
        batch = self._kept[self._pos % len(self._kept)]
        self._pos += 1
        return batch


def _multi_agent(flat: dict[str, Any]) -> Any:
    """A flat ``{"<module>/<column>": tensor}`` batch as RLlib's ``MultiAgentBatch``."""
    from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch
    from ray.rllib.utils import unflatten_dict

    nested = unflatten_dict(flat)
    steps = sum(len(next(iter(d.values()))) for d in nested.values())
    return MultiAgentBatch({m: SampleBatch(d) for m, d in nested.items()}, env_steps=steps)


class ReplayBatches:
    """Mixin for a ``Learner``: replay the first pass's minibatches (module docstring)."""

    # the Learner's, that this mixes into (annotations only: no class attribute shadows them)
    config: Any
    """The Learner's AlgorithmConfig."""
    device: Any
    """The Learner's torch device."""
    iterator: Any
    """The Learner's minibatch iterator (None until the first update), here a ``_Replay``."""

    def _create_iterator_if_necessary(self, *, training_data: Any, **kwargs: Any) -> Any:
        if not (training_data.data_iterators and getattr(self.config, "replay_batches", False)):
            # a mixin: the Learner after it in the MRO has the method, object does not
            return super()._create_iterator_if_necessary(  # type: ignore[misc]
                training_data=training_data, **kwargs
            )
        num_iters = kwargs.pop("num_iters", None)
        if num_iters is None:
            raise ValueError("Learner.update(data_iterators=..) requires `num_iters` kwarg!")
        if self.iterator is None:
            stream = training_data.data_iterators[0].iter_torch_batches(
                batch_size=kwargs["minibatch_size"],
                device=self.device,
                **{k: v for k, v in kwargs.items() if k in ("prefetch_batches",
                                                           "local_shuffle_buffer_size")},
            )  # fmt: skip
            self.iterator = _Replay(stream, num_iters)
        return self.iterator


__all__ = ["FusedFiniteCheck", "MeanPerTrain", "ReplayBatches"]
