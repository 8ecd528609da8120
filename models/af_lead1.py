"""af_lead1: atrial fibrillation and other rhythms from one handheld lead-I-like ECG (real data).

Trained on the PhysioNet/CinC Challenge 2017 records (G. D. Clifford et al., "AF Classification from a
Short Single Lead ECG Recording: the PhysioNet/Computing in Cardiology Challenge 2017", Computing in
Cardiology 44, 2017; AliveCor, 300 Hz) by `ecgedge.models.train_af`; research use, not for clinical use.

Input contract: 150 Hz (the records' 300 Hz halved: rhythm and P waves live far below 40 Hz), windows of
10 s (1500 samples; the shortest records are 9 s and are zero-padded at the end), filtered causally from
the start of the record (the runtime's StreamingFilter), in mV. A record is classified by the normalised
geometric mean of its windows' softmax probabilities, windows every 500 samples (`RECORD_AGGREGATION`).
Outputs: four logits (softmax over them) of the Challenge's classes N (normal rhythm), A (AF),
O (other rhythm), ~ (too noisy to classify).
"""

from __future__ import annotations

from ecgedge import labels as _labels

CLASSES = ("N", "A", "O", "~")
CLASS_DESCRIPTIONS = {"N": "normal sinus rhythm", "A": "atrial fibrillation", "O": "other rhythm",
                      "~": "too noisy to classify"}
SAMPLING_RATE_HZ = 150
WINDOW_S = 10
# A record's windows overlap (every 500 samples = 1/3 window, plus one ending at the record's end) and
# its class is the normalised geometric mean of their probabilities. Chosen on the validation records
# among hops of 1500 / 750 / 500 samples with the float model (f1_challenge 0.826 / 0.830 / 0.838).
RECORD_HOP_SAMPLES = 500
RECORD_RULE_NOTE = ("The record rule (window hop and geometric mean) was chosen by comparing hops of 1500, 750 and "
                    "500 samples on these validation records (0.826 / 0.830 / 0.838 with this recipe), so the "
                    "validation figures are slightly optimistic for it; the weights never saw these records.")
RECORD_AGGREGATION = ("softmax of the mean window log-probability (normalised geometric mean of the window "
                      f"probabilities) over windows every {RECORD_HOP_SAMPLES} samples plus one ending at the "
                      "record's end (records shorter than a window zero-padded)")
DATA_CITATION = ("G. D. Clifford, C. Liu, B. Moody, L. H. Lehman, I. Silva, Q. Li, A. E. Johnson, R. G. Mark, "
                 "\"AF Classification from a Short Single Lead ECG Recording: the PhysioNet/Computing in "
                 "Cardiology Challenge 2017\", Computing in Cardiology 44 (2017); data: PhysioNet "
                 "challenge-2017 (Open Data Commons Attribution licence)")
DATASET = "PhysioNet/CinC 2017"
NOTICE = _labels.label("research", dataset=DATASET).notice  # the words of ecgedge.labels' "research" kind


def _net1d(base_filters, filter_list, m_blocks_list, kernel_size, groups_width):
    # No dropout: augmentation, weight decay and weight averaging regularise (and it saves CPU time).
    # groups_width None: ungrouped convolutions (one group whatever the width).
    groups_width = max(filter_list) if groups_width is None else groups_width
    return {"base_filters": base_filters, "ratio": 1, "filter_list": list(filter_list),
            "m_blocks_list": list(m_blocks_list), "kernel_size": kernel_size, "stride": 2,
            "groups_width": groups_width, "use_bn": True, "use_do": False, "dropout": 0.0}


# "reference" is the shipped float model: plain (ungrouped) convolutions, kernel 7, one block per stage.
# It fits the Cortex-M7 cap in INT8 as it is (about 231 KB of flash, 77 KB of arena); grouped convolutions
# of the same accuracy cost more flash (per-channel quantisation data of many small tensors) and train
# slower on a CPU. "tiny" is a small preset for tests.
AF_PRESETS = {
    "reference": _net1d(16, [16, 32, 48, 64, 96], [1, 1, 1, 1, 1], kernel_size=7, groups_width=None),
    "grouped": _net1d(16, [16, 24, 32, 64, 128], [1, 1, 2, 2, 2], kernel_size=9, groups_width=8),
    "tiny": _net1d(8, [8, 16, 24, 32, 64], [1, 1, 1, 1, 1], kernel_size=9, groups_width=8),
}

# Per-target caps, tighter than the boards' budgets: the export prunes to the smaller of the two
# (quantize.footprint.budgets). Cortex-M7: the footprint. Cortex-M4: the smaller variant, at most
# half the reference's MACs (about 91 ms per window at 120 MHz, under 3 % of the 3.3 s hop) and 160 KB
# of weights; its channels are pruned and the export distils it from the reference on training records.
TARGET_CAPS = {"cortex-m7": {"flash_bytes": 256 * 1024, "ram_bytes": 128 * 1024},
               "cortex-m4": {"flash_bytes": 160 * 1024, "ram_bytes": 96 * 1024, "macs": 4_350_000}}


def af_lead1_spec():
    """The ModelSpec (registered by ecgedge.models.specs; imported here lazily: specs imports this module)."""
    from ecgedge.models.specs import ECG_PREPROCESSING, ArchSpec, InputContract, ModelSpec, OutputSpec

    return ModelSpec(
        name="af_lead1",
        description=("Rhythm class of a handheld single-lead ECG (PhysioNet/CinC 2017 classes N, A, O, ~) from "
                     "10 s windows at 150 Hz; a record is the geometric mean of its windows' probabilities. "
                     "Real data, research use, not for clinical use."),
        task="multiclass",
        input=InputContract(signal="ecg", lead="I", sampling_rate_hz=SAMPLING_RATE_HZ,
                            window_samples=SAMPLING_RATE_HZ * WINDOW_S, preprocessing=dict(ECG_PREPROCESSING),
                            record_hop_samples=RECORD_HOP_SAMPLES),
        outputs=tuple(OutputSpec(f"logit_{c}", "logit", None, None, f"logit of {CLASS_DESCRIPTIONS[c]} ({c}); "
                                 "softmax over the four") for c in CLASSES),
        arch=ArchSpec(presets=AF_PRESETS),
        weights="af_lead1.pt",
        target_caps=dict(TARGET_CAPS),
    )
