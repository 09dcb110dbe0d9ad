"""PNG plots for people: training curves, confusion matrix, sample predictions."""
import numpy as np


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend, imported at the first plot: the import
    takes seconds, which every command and every cocotb simulator run would pay otherwise
    (cocotb's assertion rewriting loads the repository's conftest.py)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def confusion_matrix(labels, predictions, n_classes):
    cm = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(cm, (labels, predictions), 1)
    return cm


def training_curves(history, path, title=""):
    plt = pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(history.epoch, history.loss, label="train loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.legend()
    ax_acc.plot(history.epoch, history.train_acc, label="train (dropout on)")
    ax_acc.plot(history.epoch, history.val_acc, label="validation")
    best = int(np.argmax(history.val_acc))
    ax_acc.scatter([history.epoch[best]], [history.val_acc[best]], color="k", zorder=3,
                   label=f"best {history.val_acc[best]:.4f}")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def confusion(cm, classes, path, title=""):
    n = len(classes)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    im = ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    hi = cm.max() / 2
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if cm[i, j] > hi else "black")
    acc = np.trace(cm) / max(1, cm.sum())
    ax.set_title(f"{title} accuracy {acc:.4f} on {cm.sum()} images")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sample_predictions(images, labels, predictions, classes, path, n=36, title=""):
    """A grid of images titled 'predicted (true)', misclassified ones in red."""
    n = min(n, len(images))
    cols = 6
    rows = (n + cols - 1) // cols
    plt = pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.8, rows * 2.0))
    for k, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.axis("off")
        if k >= n:
            continue
        ax.imshow(images[k], cmap="gray_r")
        ok = predictions[k] == labels[k]
        ax.set_title(f"{classes[predictions[k]]}\n({classes[labels[k]]})", fontsize=7,
                     color="black" if ok else "red")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
