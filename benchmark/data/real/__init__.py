"""Real data sets from their official downloads, with published split manifests.

``--data-root DIR`` (or ``BENCHMARK_DATA``) is a folder holding the official
downloads in their own layouts, one sub-folder per data set:

==========  ==========================================================  ==============================================
data set    sub-folder of the data root (any of)                         what it must hold
==========  ==========================================================  ==============================================
mimic       mimic-cxr-jpg/2.0.0, mimic-cxr-jpg,                          mimic-cxr-2.0.0-{metadata,split,chexpert}.csv
            physionet.org/files/mimic-cxr-jpg/2.0.0, MIMIC-CXR-JPG,      (.gz ok), files/pXX/pXXXXXXXX/sXXXXXXXX/*.jpg;
            mimic                                                        report text files/pXX/pXXXXXXXX/sXXXXXXXX.txt
                                                                         there, or beside it in mimic-cxr-reports/ or
                                                                         mimic-cxr/2.0.0/
chexpert    CheXpert-v1.0, CheXpert-v1.0-small, chexpert                 train.csv, valid.csv, train/, valid/
rsna        rsna-pneumonia, rsna, rsna-pneumonia-detection-challenge     stage_2_train_labels.csv (.zip ok),
                                                                         stage_2_train_images/*.dcm
siim        siim-acr-pneumothorax, siim, siim-acr                        train-rle.csv (.gz ok), dicom-images-train/**/*.dcm
covidx      covidx, COVIDx, covidx-cxr2                                  train.txt, test.txt (or train_COVIDx*.txt,
                                                                         test_COVIDx*.txt), train/, test/
object_cxr  object-cxr, object_cxr, Object-CXR                           train.csv, dev.csv, train/*.jpg, dev/*.jpg
nih         ChestX-ray14, chestx-ray14, nih-chest-xrays, nih             Data_Entry_2017_v2020.csv (.gz ok),
                                                                         train_val_list.txt, test_list.txt,
                                                                         images*/**/*.png (any depth)
==========  ==========================================================  ==============================================

Modules, one job each, each importing only those before it: ``layout``
(finding folders and label files), ``labels`` (reading and checking label
files), ``splittable`` (the split table, the recipe version, the 5x200 rule),
``mgca`` (the recipes' shared ``train_test_split`` steps), ``images`` (decoding,
resize-pad, memmap cache), ``loaders`` (builders of task splits as
``benchmark.data.types`` containers), ``manifests`` (published lists +
summary.json), ``prepare`` (``data prepare``), ``check`` (``data check``).
What is specific to a data set (its layout row above, label reader, recipe,
image paths) is its module under ``benchmark.data.sets``. docs/DATA.md holds
the same table for users.
"""

from __future__ import annotations


def real_task_splits(cfg, root, splits=("train", "val", "test")) -> dict:
    """{split: data set} of a task config from the downloads under ``root``."""
    from benchmark.data.sources import task_splits

    return task_splits(cfg, root, splits)[0]


def real_corpus(cfg, root):
    """The pre-training corpus (PairCorpus) for a method config from the downloads under ``root``."""
    from benchmark.data.sources import pretrain_corpus

    return pretrain_corpus(cfg, root)
