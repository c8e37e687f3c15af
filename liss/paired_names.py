"""Names of the paired-truth metrics, apart from their torch code: the config validates
`train.best_metric` against them without importing torch."""

WHOLE = ("l1", "psnr", "ssim", "changed_l1")  # every dataset with paired truth
MASKED = ("bg_l1", "bg_psnr", "object_l1", "texture")  # where the truth has object masks
METRICS = WHOLE + MASKED
# the synthetic benchmark's well-posed object score per dataset direction (A plain, B striped)
WELL_POSED = {"A2B": ("texture", "object texture"), "B2A": ("object_l1", "object L1")}


def well_posed(name: str, direction: str = "AtoB") -> tuple[str, str]:
    """(metric, label) of the well-posed object score of metric direction `name` ("A2B"):
    names are config domains, so `data.direction=BtoA` swaps the dataset's directions."""
    flipped = {"A2B": "B2A", "B2A": "A2B"}
    return WELL_POSED[name if direction == "AtoB" else flipped[name]]
