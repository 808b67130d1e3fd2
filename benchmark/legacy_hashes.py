"""The store keys of task configs from before ``TaskConfig.real`` was removed (issue 26).

Task configs used to carry ``real:``, a description of the real data set's files and split in
prose that no code read, yet it was part of every task's hash. It is gone from the configs; what
each shipped task said there is kept here, only so that :func:`legacy_task_hashes` can compute the
keys its trials were stored under (the store finds them and moves them to the new key). A task of
a user's folder that includes a shipped one said what that one said: every former value is tried
(the config's other fields tell the tasks apart), and the empty one (a task that had no ``real:``).
"""

from __future__ import annotations

from typing import Any

from benchmark.config import config_hash, hashed_fields

#: shipped task -> its former ``real:`` value
LEGACY_REAL: dict[str, dict[str, str]] = {'chexpert5x200_ret': {'source': 'none yet. CheXpert publishes no report text, so the real run stops with a '
                                 'clear error; the phantom stand-in has reports'},
 'chexpert5x200_zs': {'source': 'CheXpert-v1.0 train.csv, frontal, positive for exactly one of the five '
                                'labels and 0 for the other 12 non-"No Finding" labels, sample(n=200, '
                                'random_state=0) per class; the exact list is published with the data issue'},
 'chexpert_cls': {'folder': 'CheXpert-v1.0 (or CheXpert-v1.0-small)',
                  'labels': 'train.csv, valid.csv',
                  'split': 'frontal only; uncertain -1: Atelectasis, Edema, Effusion -> 1, Cardiomegaly, '
                           'Consolidation -> 0; NaN -> 0; the 5x200 images removed from train; 5,000 val '
                           'drawn from train (seed 0); test = the official valid'},
 'covidx_cls': {'labels': 'train.txt, test.txt (patient id, filename, class, source)',
                'split': 'official train split 80/20 (random_state 0) into train/val; test = the official '
                         'test list'},
 'mimic5x200_zs': {'source': 'MIMIC-CXR-JPG frontal images, CheXpert-labeler positive for exactly one of the '
                             'five labels and 0 for the other 12 non-"No Finding" labels, sample(n=200, '
                             'random_state=0) per class; those studies are left out of pre-training (`data '
                             'prepare mimic` writes the list)'},
 'nih_cls': {'labels': 'Data_Entry_2017_v2020.csv',
             'split': "BenchX uses MRM's train/val/test lists (published with the data issue)"},
 'object_cxr_det': {'labels': 'train.csv, dev.csv (image_name, annotation; type 0 rectangle, 1 ellipse, 2 '
                              'polygon)',
                    'split': 'official train 90/10 (random_state 0) -> 7,200 / 800; dev = test (1,000)'},
 'rsna_cls': {'folder': 'rsna-pneumonia',
              'images': 'stage_2_train_images',
              'labels': 'stage_2_train_labels.csv',
              'split': 'mgca classification split: train_test_split(test_size=0.3, random_state=0), then '
                       'halves -> 18,678 / 4,003 / 4,003 patients'},
 'rsna_det': {'folder': 'rsna-pneumonia',
              'images': 'stage_2_train_images',
              'labels': 'stage_2_train_labels.csv',
              'split': 'mgca detection/segmentation split: train_test_split(test_size=5337*2, '
                       'random_state=0), then halves -> 16,010 / 5,337 / 5,337 patients'},
 'rsna_seg': {'folder': 'rsna-pneumonia',
              'images': 'stage_2_train_images',
              'labels': 'stage_2_train_labels.csv',
              'split': 'mgca detection/segmentation split: train_test_split(test_size=5337*2, '
                       'random_state=0), then halves -> 16,010 / 5,337 / 5,337 patients'},
 'rsna_seg_pos': {'folder': 'rsna-pneumonia',
                  'images': 'stage_2_train_images',
                  'labels': 'stage_2_train_labels.csv',
                  'split': 'mgca detection/segmentation split: train_test_split(test_size=5337*2, '
                           'random_state=0), then halves -> 16,010 / 5,337 / 5,337 patients'},
 'rsna_zs': {'folder': 'rsna-pneumonia', 'split': 'the mgca classification test split (4,003 patients)'},
 'siim_seg': {'images': 'dicom-images-train/**/*.dcm',
              'labels': 'train-rle.csv (ImageId, EncodedPixels; "-1" = no pneumothorax, with or without a '
                        'leading space)',
              'split': 'rows grouped by ImageId first (the mgca code splits rows, so an image can land in '
                       'two splits), then 70/15/15 (random_state 0); train balanced: all positives + as many '
                       'negatives'},
 'siim_seg_pos': {'images': 'dicom-images-train/**/*.dcm',
                  'labels': 'train-rle.csv (ImageId, EncodedPixels; "-1" = no pneumothorax, with or without '
                            'a leading space)',
                  'split': 'rows grouped by ImageId first (the mgca code splits rows, so an image can land '
                           'in two splits), then 70/15/15 (random_state 0); train balanced: all positives + '
                           'as many negatives'}}

def legacy_task_hashes(cfg: Any, *extra: str) -> list[str]:
    """The hashes ``cfg`` (a task config) had when task configs held ``real:``: one per former value
    (and the empty one), ``extra`` as for :func:`benchmark.config.config_hash`."""
    candidates = [{}, *LEGACY_REAL.values()]
    unique = {repr(sorted(r.items())): r for r in candidates}.values()
    return [config_hash({**hashed_fields(cfg), "real": real}, *extra) for real in unique]
