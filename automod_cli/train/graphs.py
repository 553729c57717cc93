"""Training steps captured as CUDA graphs and replayed (``cuda_graphs`` on; CUDA, one process).

Why: a small model on a GPU is bound by kernel launches, not arithmetic. An iteration of the toy
presets is ~5,000 PyTorch ops; eagerly each costs a CPU dispatch and a launch (65-100 ms per
iteration on an H200 whatever the batch). A replayed graph launches them all at once.

How: a step is a function of device tensors only (the trainer draws every random choice on the
host first: codes, crossover block, pool rows). Each distinct step (encoder or decoder, crossover
block, the phase's plan) runs eagerly ``warmup`` times on a side stream (lazy initialisation: Adam
state, cuDNN plans, the robust-loss table), is then captured once, and from then on its inputs are
copied into the captured ones and the graph is replayed. Layer noise is drawn in the graph from
torch's CUDA generator (graph-safe: each replay draws new numbers). Graphs hold their own memory
(one private pool each) and are dropped at every phase change.

Only the stable part of a phase (α = 1) is captured: during a fade α changes every iteration and
the fade adds paths, so fades run eagerly. A capture that fails (an op that cannot be captured)
turns graphs off for the rest of the run with one line of explanation; the step then runs eagerly,
as if graphs had never been on.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable

import torch

Step = Callable[..., dict[str, torch.Tensor]]


class StepGraphs:
    def __init__(self, warmup: int = 2, say: Callable[[str], None] = print):
        self.warmup = warmup
        self.say = say
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, dict, dict]] = {}
        self.eager_runs: Counter = Counter()
        self.side = torch.cuda.Stream()
        self.failed = False
        self.captures = 0
        self.replays = 0

    def clear(self) -> None:
        """Drop every graph (at a phase change: shapes and the plan change)."""
        self.graphs.clear()
        self.eager_runs.clear()

    def _on_side_stream(self, step: Step, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A warm-up run, on a side stream as PyTorch's whole-network capture recipe has it. The side
        stream waits for the current one first and the current one for it after, so tensors passed
        between them (inputs, outputs, gradients) are never read and reused out of order."""
        current = torch.cuda.current_stream()
        self.side.wait_stream(current)
        with torch.cuda.stream(self.side):
            out = step(**inputs)
        current.wait_stream(self.side)
        return out

    def run(self, key: tuple, step: Step, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``step(**inputs)``, from a graph of it once it has run ``warmup`` times eagerly."""
        if self.failed:
            return step(**inputs)
        entry = self.graphs.get(key)
        if entry is None:
            if self.eager_runs[key] < self.warmup:
                self.eager_runs[key] += 1
                return self._on_side_stream(step, inputs)
            static = {k: v.clone() for k, v in inputs.items()}
            graph = torch.cuda.CUDAGraph()
            try:
                # thread_local: the data loader's pin-memory thread may call CUDA while this one captures
                with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                    out = step(**static)
            except Exception as e:  # noqa: BLE001 - any capture failure: fall back to eager steps
                self.failed = True
                self.graphs.clear()
                self.say(f"CUDA graphs off for the rest of this run (capturing a training step failed: "
                         f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); training goes on eagerly")
                torch.cuda.synchronize()
                return step(**inputs)  # the captured step never ran: run it now
            out = {k: v.detach() for k, v in out.items()}  # keep the values, not the captured autograd graph
            entry = self.graphs[key] = (graph, static, out)
            self.captures += 1
        graph, static, out = entry
        for k, v in inputs.items():
            static[k].copy_(v, non_blocking=True)
        graph.replay()
        self.replays += 1
        return dict(out)  # the tensors are the graph's (overwritten by its next replay); the dict is the caller's
