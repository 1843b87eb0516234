"""Step 11 with the identity term: Crafter whose outer loss also removes what a model of public
identities reads as identity from F (featureCrafter.py, gamma > 0; L_id there).

Crafter's own objective only looks at its generator's reconstructions, so a classifier reading
identity straight from the features (Feature2ID, adaptive or not) is its worst case. The defender
trains what that attacker trains, on its own public identities only (Feature2ID/f2id_train.py
--split public: no private image, label or oracle), and pushes the embedding of F away from
f0's. Same knob (beta) and runs as Crafter, as its own curve: crafterid_beta<beta>.

    python Crafter_protection/idCrafter.py --preset demo --beta 0.01      # after f2id_train.py --split public
"""
from Crafter_protection import featureCrafter

PROTECTION = dict(prefix='crafterid_beta', knob='beta', label='Crafter + identity term (beta)', style='o-.',
                  own_encoder=False, randomised=False, order=11, needs=['amor', 'f2id_public'],
                  # Crafter's own full points; demo: under `make sweep PRESET=demo` (keeps `make demo` short)
                  points={'tiny': [1], 'celeba-cpu': [0.3], 'paper': [1]},
                  full={'celeba-cpu': [0.3], 'paper': [1]}, sweep={'demo': [0.01]},
                  make='Crafter_protection/idCrafter.py --beta {value} --split {split}')
# ---- hyperparameters: Crafter's (featureCrafter.HP, the same presets) with the identity term on ----
HP = {**featureCrafter.HP, 'gamma': 1.0}   # gamma: weight of L_id (featureCrafter.py)


def main(argv=None):
    return featureCrafter.main(argv, HP)


if __name__ == '__main__':
    main()
