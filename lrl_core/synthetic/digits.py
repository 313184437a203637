"""``digits_semi_synthetic``: the paper's semi-synthetic design (sec. 5.4) on scikit-learn's digits."""
from __future__ import annotations

from typing import Literal

import numpy as np

from .base import SyntheticData, _arm_layout, _eval_set, _outcomes


def digits_semi_synthetic(
    share: float = 0.1,
    seed: int = 0,
    test_fraction: float = 0.2,
    features: Literal["hidden", "pixels"] = "hidden",
    hidden: tuple[int, int] = (64, 32),
    noise_sd: float = 0.0,
) -> SyntheticData:
    """The paper's semi-synthetic design (section 5.4) on scikit-learn's digits.

    A classifier (``sklearn.neural_network.MLPClassifier`` with two ReLU
    hidden layers of sizes ``hidden``, seeded by ``seed``) is trained on all
    1797 bundled 8x8 digit images (no download). The potential outcome of
    arm ``c`` is the classifier's logit for class ``c``, divided by one
    common scale (the standard deviation of all logits) so that outcomes
    have unit variance without changing any contrast between classes. Class
    0 is the control of every experiment: 9 experiments, experiment ``c``
    comparing class ``c`` with class 0, one metric.

    Features (``features``): ``"hidden"`` (default), the first hidden
    layer's activations, as the paper takes an intermediate layer; the map
    from them to the outcomes passes through one more ReLU layer, so it is
    nonlinear and not in the linear T-learner's class. ``"pixels"``: the 64
    raw pixel intensities, where the whole network is the map.

    Units are split at random into a training part and a held-out part
    (``test_fraction``). Every training unit joins each experiment
    independently with probability ``share`` (the paper: 10%), and within it
    control or treatment with probability 1/2, so a unit may sit in several
    experiments and some sit in none. Held-out units make ``.eval``: every
    (unit, experiment) pair, with a random assigned arm for mu-risk.

    1797 units is small next to the paper's 60000 CIFAR-100 images (about
    70 training units per arm at ``share = 0.1``); it is the data set that
    ships with scikit-learn, so the study runs offline in seconds.

    Returns:
        ``SyntheticData`` with float64 ``X``; noise of sd ``noise_sd`` (the
        paper adds none) on training outcomes and both held-out potential outcomes.
    """
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    if features not in ("hidden", "pixels"):
        raise ValueError(f"features must be 'hidden' or 'pixels', not {features!r}")
    rng = np.random.default_rng(seed)
    pixels, labels = load_digits(return_X_y=True)
    pixels = pixels / 16.0
    clf = MLPClassifier(hidden_layer_sizes=hidden, alpha=1e-3, max_iter=500, random_state=seed)
    clf.fit(pixels, labels)
    h1 = np.maximum(pixels @ clf.coefs_[0] + clf.intercepts_[0], 0.0)
    h2 = np.maximum(h1 @ clf.coefs_[1] + clf.intercepts_[1], 0.0)
    logits = h2 @ clf.coefs_[2] + clf.intercepts_[2]
    logits /= logits.std()
    X_all = h1 if features == "hidden" else pixels

    n_classes = logits.shape[1]
    K = n_classes - 1
    arm_experiment, control_arm, arm_names = _arm_layout([2] * K)
    # Arm 2k is class 0 (control), arm 2k + 1 is class k + 1: a one-hot weight picks the logit.
    arm_class = np.where(np.arange(2 * K) % 2 == 0, 0, np.arange(2 * K) // 2 + 1)
    arm_weights = np.eye(n_classes)[arm_class][:, :, None]  # (G, 10, 1)
    arm_bias = np.zeros((2 * K, 1))

    n_all = len(labels)
    perm = rng.permutation(n_all)
    n_test = int(round(test_fraction * n_all))
    test, train = np.sort(perm[:n_test]), np.sort(perm[n_test:])

    member = rng.random((len(train), K)) < share
    row_unit, row_exp = np.nonzero(member)
    arms = (2 * row_exp + (rng.random(len(row_exp)) < 0.5)).astype(np.int64)
    units = row_unit.astype(np.int64)
    latent = logits[train]
    Y = _outcomes(latent, arm_weights, arm_bias, units, arms)
    Y += noise_sd * rng.standard_normal(Y.shape)

    data = SyntheticData(
        X=X_all[train], unit_ids=train.astype(np.int64), units=units, arms=arms, Y=Y,
        arm_experiment=arm_experiment, control_arm=control_arm,
        experiments=[f"digit_{c}_vs_0" for c in range(1, n_classes)], arm_names=arm_names,
        metrics=["logit"], noise_sd=noise_sd, _latent=latent, _arm_weights=arm_weights, _arm_bias=arm_bias,
    )
    if n_test:
        pair_unit = np.repeat(np.arange(n_test), K)
        pair_arms = np.tile(control_arm, n_test)[:, None] + np.arange(2)
        assigned = (rng.random(len(pair_unit)) < 0.5).astype(np.int64)
        data.eval = _eval_set(rng, X_all[test], logits[test], pair_unit, pair_arms, assigned,
                              arm_weights, arm_bias, noise_sd)
    return data
