"""Train and apply a ResNet-18 classifier on the raw parquet shards: resumable, deterministic, DDP-aware.

Data
----
Label files name the images and the label to use (``image_id, label`` for training; ``image_id,
label, leaked`` for evaluation). Images are read straight from ``data/raw/shards`` by ``(shard, row)``
from the raw index and decoded with :func:`vlclean.images.load_rgb` to ``image_size`` (shorter side
resized, centre crop). Two loaders share that decoding:

* ``memory``: every image decoded once into a uint8 tensor ``[N, 3, S, S]`` (the built-in dataset:
  1,838 x 3 KB = 6 MB). Batches are slices of that tensor, no worker processes.
* ``stream``: a map-style dataset indexed by ``(shard, row group, row)`` (shards are written with
  1,024-row row groups). A block-shuffle sampler permutes row groups and shuffles images inside a
  window of ``stream_window_blocks`` row groups, so each DataLoader worker keeps only a small LRU of
  decoded-on-demand row groups (window + 1) instead of the dataset: ImageNet never has to fit in RAM.

``loader: auto`` picks ``memory`` when ``N x 3 x S^2`` bytes fit in ``cache_max_mb``.

Training
--------
Augmentation (random crop with padding, optional horizontal flip) runs on whole batches after loading,
driven by a generator seeded from ``(seed, epoch, rank)``; sampling order is a function of
``(seed, epoch)`` too. Epoch ``e`` therefore depends only on the state after epoch ``e - 1``, which
the per-epoch checkpoint holds exactly (model, optimizer, scheduler, loss scaler, RNG states, metric
history): a run killed at any point and rerun ends bitwise identical to an uninterrupted one on CPU.
Checkpoints live under ``checkpoint_dir/<fingerprint>/`` where the fingerprint covers the params
that change results, the label files' and raw index's hashes and the world size; a changed config
never resumes a stale run.

Under ``torchrun`` (``WORLD_SIZE > 1``) the process group is initialised (``nccl`` on CUDA, ``gloo`` on
CPU), every rank trains on its share of each epoch and only rank 0 logs, checkpoints and writes.

Modules
-------
``data`` (label files, decoding, datasets, sampling orders, the DataLoader), ``model`` (ResNet-18
built, saved, loaded; normalisation, augmentation, :func:`~vlclean.training.model.predict`),
``distributed`` (rank, world size, device), ``checkpoint`` (run fingerprint, RNG states, per-epoch
checkpoints), ``loop`` (:func:`~vlclean.training.loop.train`: ``train_one_epoch``, ``validate``) and
``evaluation`` (test-split scores). This package imports none of them, so a stage's DVC deps list
only the modules it uses.
"""
