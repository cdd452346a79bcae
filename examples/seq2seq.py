"""A GRU encoder-decoder that learns to reverse sequences of digits, one decoder step at a time.

    python examples/seq2seq.py                                          # the full run: about 20 s on a CPU
    python examples/seq2seq.py --max_epochs 1 --limit_train_batches 2   # a smoke run

The data is made up in memory from a seed: random digit sequences, each paired with its reverse. The
encoder reads a sequence into one hidden state; the decoder writes the answer a token at a time.
``training_step`` is the loop over time steps written out, with teacher forcing: at every step the
decoder is fed the true previous token, whatever it predicted. Validation runs on sequences drawn
from another seed and decodes greedily, each prediction fed back as the next input, as at inference.
It reports the share of tokens right (``val_token_acc``) and of whole sequences right (``val_sequence_acc``).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from engineering import Trainer, seed_everything
from research import LightningModule


def reversal_dataset(count: int, length: int, vocabulary: int, seed: int) -> TensorDataset:
    """``count`` pairs (digits, the same digits reversed), each token in ``range(vocabulary)``."""
    sources = torch.randint(0, vocabulary, (count, length), generator=torch.Generator().manual_seed(seed))
    return TensorDataset(sources, sources.flip(1))


class Reverser(LightningModule):
    def __init__(self, vocabulary: int = 10, embedding_dim: int = 32, hidden_dim: int = 128, lr: float = 5e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.start_token = vocabulary  # one extra embedding row: the decoder's first input
        self.embedding = nn.Embedding(vocabulary + 1, embedding_dim)
        self.encoder = nn.GRU(embedding_dim, hidden_dim, batch_first=True)
        self.decoder = nn.GRUCell(embedding_dim, hidden_dim)
        self.output = nn.Linear(hidden_dim, vocabulary)

    def encode(self, sources: torch.Tensor) -> torch.Tensor:
        _, hidden = self.encoder(self.embedding(sources))
        return hidden[0]  # (layers=1, batch, hidden) -> (batch, hidden)

    def decode_step(self, previous: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step: the previous token and the hidden state in, next-token logits and the new state out."""
        hidden = self.decoder(self.embedding(previous), hidden)
        return self.output(hidden), hidden

    def start(self, batch_size: int) -> torch.Tensor:
        return torch.full((batch_size,), self.start_token, dtype=torch.long, device=self.device)

    def training_step(self, batch, batch_idx):
        sources, targets = batch
        hidden = self.encode(sources)
        previous = self.start(len(sources))
        loss = 0.0
        for step in range(targets.size(1)):
            logits, hidden = self.decode_step(previous, hidden)
            loss = loss + F.cross_entropy(logits, targets[:, step])
            previous = targets[:, step]  # teacher forcing: the truth, not the prediction, goes in next
        loss = loss / targets.size(1)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    @torch.no_grad()
    def generate(self, sources: torch.Tensor) -> torch.Tensor:
        """Greedy decoding: each step's most likely token is the next step's input."""
        hidden = self.encode(sources)
        previous = self.start(len(sources))
        outputs = []
        for _ in range(sources.size(1)):
            logits, hidden = self.decode_step(previous, hidden)
            previous = logits.argmax(dim=1)
            outputs.append(previous)
        return torch.stack(outputs, dim=1)

    def validation_step(self, batch, batch_idx):
        sources, targets = batch
        correct = self.generate(sources) == targets
        self.log("val_token_acc", correct.float().mean(), prog_bar=True)
        self.log("val_sequence_acc", correct.all(dim=1).float().mean())

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        # One cycle over the whole run: warm up, then anneal. It needs the run's length in optimizer steps.
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=self.hparams.lr, total_steps=self.trainer.estimated_stepping_batches
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max_epochs", type=int, default=10)
    parser.add_argument("--limit_train_batches", type=float, default=1.0)
    parser.add_argument("--train_samples", type=int, default=10_000)
    parser.add_argument("--val_samples", type=int, default=2_000)
    parser.add_argument("--length", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    # A step here is dozens of small matrix products, one per time step: too small to split across threads,
    # so more threads only wait on each other (6x slower with two on two busy cores).
    torch.set_num_threads(1)
    seed_everything(args.seed)
    model = Reverser()
    vocabulary = model.hparams.vocabulary
    train = reversal_dataset(args.train_samples, args.length, vocabulary, seed=args.seed)
    held_out = reversal_dataset(args.val_samples, args.length, vocabulary, seed=args.seed + 1)
    limit = int(args.limit_train_batches) if args.limit_train_batches > 1 else args.limit_train_batches
    trainer = Trainer(
        max_epochs=args.max_epochs, limit_train_batches=limit, enable_checkpointing=False,
        gradient_clip_val=1.0,  # recurrent nets: one unlucky batch can blow a gradient up through time
    )
    trainer.fit(
        model,
        DataLoader(train, batch_size=args.batch_size, shuffle=True),
        DataLoader(held_out, batch_size=512),
    )

    metrics = trainer.callback_metrics
    print(f"val_token_acc: {metrics['val_token_acc'].item():.4f}")
    print(f"val_sequence_acc: {metrics['val_sequence_acc'].item():.4f}")
    sources, _ = held_out[:1]
    answer = model.generate(sources.to(model.device))
    print(f"reversing {sources[0].tolist()} gives {answer[0].tolist()}")


if __name__ == "__main__":
    main()
