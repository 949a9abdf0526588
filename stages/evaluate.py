"""evaluate: test accuracy of the trained model, on the full and the leak-free test split, per class.

Inputs:  ``--raw`` (data/raw), ``--model`` (models/model.pt from train), ``--labels`` (eval label CSV:
         image_id, label, leaked), params ``evaluate``.
Outputs: ``--metrics`` (metrics/eval.json: accuracy, accuracy_leak_free, leak_inflation, n_test,
         n_leak_free, per-class accuracy), ``--plots``: per_class_accuracy.csv/.png and confusion.csv
         (one row per test image: image_id, actual, predicted, leaked; DVC's confusion template) + .png,
         ``--predictions`` (data/evaluate/predictions.csv, ``schema.PREDICTIONS``: image_id, label,
         predicted, correct; sorted by image_id, so two experiments pair image by image).
W&B:     when the model was trained with ``train.wandb.enabled``, the test metrics and ``--cleaning_metrics``
         (metrics/build_manifest.json) go to the summary of its W&B run (vlclean.tracking).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


from vlclean import cli
from vlclean.datasets import RawDataset
from vlclean.devices import resolve_device
from vlclean.errors import DatasetError
from vlclean.params import load_params
from vlclean.reporting import bar_plot, confusion_heatmap
from vlclean.schema import validate_predictions
from vlclean.storage import write_csv, write_json
from vlclean.tracking import log_results
from vlclean.training.data import open_images, read_label_file
from vlclean.training.evaluation import evaluation_report, prediction_table
from vlclean.training.model import load_model, predict


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(__doc__)
    p.add_argument("--raw", default="data/raw")
    p.add_argument("--model", default="models/model.pt")
    p.add_argument("--labels", required=True, help="eval label CSV (image_id, label, leaked)")
    p.add_argument("--metrics", default="metrics/eval.json")
    p.add_argument("--plots", default="plots/evaluate")
    p.add_argument("--predictions", default="data/evaluate/predictions.csv")
    p.add_argument("--cleaning_metrics", default=None,
                   help="build_manifest's metrics JSON: logged with the test metrics to the model's W&B run, if any")

    def body(args: argparse.Namespace) -> int:
        every = load_params(args.params)
        params, rt = every.evaluate, every.runtime.evaluate
        device = resolve_device(rt.device, key="runtime.evaluate.device")
        raw = RawDataset.open(args.raw)
        names = raw.classes().sort_values("label")["class_name"].astype(str).tolist()
        model = load_model(args.model, device)
        if model.num_classes != len(names):
            raise DatasetError(f"model {args.model} has {model.num_classes} classes, {args.raw} has {len(names)}")
        images = read_label_file(args.labels, raw, with_leaked=True)
        data = open_images(args.raw, images, model.image_size, loader=rt.loader,
                           cache_max_mb=rt.cache_max_mb, workers=rt.workers)
        pred = predict(model.model, data, device=device, batch_size=rt.batch_size, workers=rt.workers,
                       amp=params.amp, amp_dtype=params.amp_dtype)
        report = evaluation_report(images, pred, names)
        write_json(args.metrics, report.metrics)
        write_csv(args.predictions, validate_predictions(prediction_table(images, pred)))
        plots = Path(args.plots)
        bar_plot(report.per_class, x="class_name", y="accuracy", csv_path=plots / "per_class_accuracy.csv",
                 png_path=plots / "per_class_accuracy.png", title="Test accuracy per class",
                 horizontal=len(names) > 30)
        write_csv(plots / "confusion.csv", report.confusion)
        confusion_heatmap(report.confusion, names, plots / "confusion.png", title="Confusion matrix (test split)")
        if model.wandb_run is not None:
            cleaning = json.loads(Path(args.cleaning_metrics).read_text()) if args.cleaning_metrics else None
            log_results(model.wandb_run, test_metrics=report.metrics, cleaning=cleaning)
        m = report.metrics
        print(f"evaluate: accuracy {m['accuracy']} on {m['n_test']} test images, {m['accuracy_leak_free']} on the "
              f"{m['n_leak_free']} leak-free ones (leak inflation {m['leak_inflation']})")
        return 0

    return cli.run(body, p, argv)


if __name__ == "__main__":
    raise SystemExit(main())
