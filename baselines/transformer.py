"""Transformer++: the direct next-token predictor the Energy-Based Transformer is compared with.

The same Llama blocks, width and depth as energies/transformer.py, over the causal sequence of
context embeddings, with an output head from the width to vocabulary logits. Parameter counts
match the EBT's except that the EBT has a per-step embedding (max_steps x width) and an energy
head (width) where this model has nothing; its output head (width x vocab) is the same size as
the EBT's vocab-to-width map (tests/energies/test_transformer.py checks the difference).

It answers in the flat layout of tasks/text.py ([windows * context, vocab] logits, one instance per
predicted token) and gives the same answer at every step budget.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from irem.networks.transformer import Block, RMSNorm, check_transformer_sizes, rotary_tables, window_tokens
from irem.predictor import Predictions, Predictor, check_budgets
from irem.problem import Problem
from irem.task import Task


class TransformerPP(Predictor):
    """Causal Llama-style language model: logits [B, T, V] for the next token at every position."""

    def __init__(self, vocab_size: int, context: int, width: int = 128, depth: int = 4, heads: int = 4) -> None:
        super().__init__()
        check_transformer_sizes("TransformerPP", vocab_size, context, width, depth, heads)
        self.vocab_size, self.context = vocab_size, context
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.norm = RMSNorm(width)
        self.output = nn.Linear(width, vocab_size, bias=False)
        cos, sin = rotary_tables(torch.arange(context), width // heads)
        self.register_buffer("rotary_cos", cos, persistent=False)
        self.register_buffer("rotary_sin", sin, persistent=False)

    def forward(self, tokens: Tensor) -> Tensor:
        b, t = tokens.shape
        if t > self.context:
            raise ValueError(f"TransformerPP(context={self.context}) got windows of {t} tokens.")
        h = self.token_embedding(tokens)
        cos, sin = self.rotary_cos[:t], self.rotary_sin[:t]
        for block in self.blocks:
            h = block(h, cos, sin, None)  # None: plain causal attention
        return self.output(self.norm(h))

    def _flat_logits(self, task: Task, problem: Problem) -> Tensor:
        tokens = window_tokens(problem.x)
        if problem.num_instances != tokens.numel():
            raise ValueError(
                f"TransformerPP reads one instance per predicted token; task '{task.name}' gave "
                f"{problem.num_instances} instances for windows of shape {tuple(tokens.shape)}."
            )
        return self(tokens).reshape(tokens.numel(), self.vocab_size)

    def training_loss(
        self, task: Task, problem: Problem, generator: torch.Generator
    ) -> tuple[Tensor, dict[str, float]]:
        return task.loss(problem, self._flat_logits(task, problem)).mean(), {}

    def predict(self, task: Task, problem: Problem, budgets: Sequence[int], generator: torch.Generator) -> Predictions:
        wanted = check_budgets(budgets, owner="TransformerPP.predict")
        with torch.no_grad():  # evaluation leaves autograd on for descent; a direct predictor needs none
            y = self._flat_logits(task, problem)
        return Predictions(answers={str(b): y for b in wanted}, info={"steps_mean": {str(b): 1.0 for b in wanted}})
