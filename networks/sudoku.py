"""Network pieces for 9x9 Sudoku shared by its energies and baselines: the constraint graph of the
81 cells, a check of the board tensors, and the messages of one round of message passing (RRN).

Every cell is joined to the 20 cells sharing its row, column or box (its peers). The graph is the
same for every puzzle, so it is built once: as fixed 81 x 81 matrices where a sum over peers is a
batched matrix product (the graph energy), and as the 1620 ordered peer pairs where a message
depends on both of its ends (the RRN).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

CELLS, DIGITS = 81, 9


def peer_adjacency() -> Tensor:
    """[81, 81] float: 1 where two different cells share a row, column or box."""
    cell = torch.arange(CELLS)
    row, col = cell // 9, cell % 9
    box = (row // 3) * 3 + col // 3
    same = (row[:, None] == row[None]) | (col[:, None] == col[None]) | (box[:, None] == box[None])
    return (same & ~torch.eye(CELLS, dtype=torch.bool)).float()


def unit_adjacency() -> Tensor:
    """[3, 81, 81] float: for rows, columns and boxes in turn, 1 where two different cells share that
    unit (their sum is `peer_adjacency` but for the cells that share two units, counted twice)."""
    cell = torch.arange(CELLS)
    row, col = cell // 9, cell % 9
    box = (row // 3) * 3 + col // 3
    eye = torch.eye(CELLS, dtype=torch.bool)
    return torch.stack([((u[:, None] == u[None]) & ~eye).float() for u in (row, col, box)])


def peer_edges() -> Tensor:
    """[2, 1620]: (cell, peer) for every ordered pair of peers, grouped by cell."""
    return peer_adjacency().nonzero().t().contiguous()


def check_board_tensor(owner: str, t: Tensor, what: str) -> Tensor:
    """A board tensor as [N, 81, 9] (a flat [N, 729] is read the same way), or a clear error."""
    if not isinstance(t, Tensor) or t.dim() not in (2, 3) or t[0].numel() != CELLS * DIGITS:
        got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
        raise ValueError(f"{owner}: {what} must be a Sudoku tensor [N, 81, 9] (or [N, 729]), got {got}.")
    return t.reshape(t.shape[0], CELLS, DIGITS)


class PeerMessages(nn.Module):
    """The messages of one round of message passing on the peer graph: for each cell i, the sum over
    its 20 peers j of MLP([h_i, h_j]) (RRN, Palm et al. 2018), a message per edge that depends on
    both ends. The first layer is split as W_a h_i + W_b h_j, so it is computed once per cell and
    only the rest runs per edge."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.register_buffer("edges", peer_edges(), persistent=False)
        self.to_message_i = nn.Linear(width, width)
        self.to_message_j = nn.Linear(width, width, bias=False)
        self.message = nn.Sequential(nn.ReLU(), nn.Linear(width, width))

    def forward(self, h: Tensor) -> Tensor:
        i, j = self.edges
        pre = self.to_message_i(h)[:, i] + self.to_message_j(h)[:, j]  # [N, 1620, width]
        return h.new_zeros(h.shape).index_add_(1, i, self.message(pre))
