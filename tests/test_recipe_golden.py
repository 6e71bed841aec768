"Every bundled recipe and every experiment arm runs with the settings it had before the recipe schema became the library's own classes."
import json
from dataclasses import asdict
from pathlib import Path

import pytest

from slimlab.recipes import bundled_recipes, distill_config, load_recipe, plan_recipe, read_recipe_file
from slimlab.findings import arm_recipes, bundled_experiments, read_experiment

GOLDEN = json.loads((Path(__file__).parent/'golden'/'recipe_settings.json').read_text())

def _plain(x): return json.loads(json.dumps(x))

def _no_labels(d):
    "Drop the loss weights' labels (`name`), which only name them in messages."
    if isinstance(d, dict): return {k: _no_labels(v) for k, v in d.items() if not (k == 'name' and isinstance(v, str))}
    return [_no_labels(v) for v in d] if isinstance(d, list) else d

def _data(d) -> dict:
    "The data section in the snapshot's form (before sources became `TextSource`s): the train text, its column, the validation split and length."
    return dict(train=d.train.source, text_field=d.train.text_field, eval_split=d.validation.split, eval_tokens=d.validation_tokens)

def settings(r) -> dict:
    "What a run of recipe `r` uses: the plan's lines and every setting handed to the library."
    plan = plan_recipe(r)
    report = _plain(asdict(r.report))
    return dict(name=r.name, description=r.description, reproduces=r.reproduces, published=r.published, teacher=asdict(r.teacher),
                lines=plan.lines(), distill=_no_labels(_plain(asdict(distill_config(r)))),
                report={k: v for k, v in report.items() if k != 'max_tokens'} | dict(max_tokens=r.report.max_tokens),
                moefy=None if r.moefy is None else asdict(r.moefy) | dict(samples=r.calibration.samples, seq_len=r.calibration.seq_len),
                correction=None if r.correction is None else asdict(r.correction), data=_data(r.data),
                schedule=dict(stages=[asdict(s) for s in plan.stages], final=dict(r.prune.final), layer_metric=r.prune.layer_metric,
                              expert_metric=r.prune.expert_metric, strategy=r.prune.experts.strategy, preserve=r.prune.experts.preserve,
                              similarity=r.prune.experts.similarity, init=r.training.init, mtp_depth=r.training.mtp_depth,
                              feature_distance=r.training.feature_distance, seed=r.distill.seed, samples=r.calibration.samples,
                              seq_len=r.calibration.seq_len))

def _compare(key: str, got: dict): assert _plain(got) == GOLDEN[key], key

def test_every_bundled_recipe_runs_as_before():
    seen = 0
    for name in bundled_recipes():
        for scale in (read_recipe_file(name)[1].get('scales') or {None: 0}):
            _compare(f"recipe {name} {scale}", settings(load_recipe(name, scale))); seen += 1
    assert seen == len([k for k in GOLDEN if k.startswith('recipe ')])

@pytest.mark.parametrize('name', bundled_experiments())
def test_every_experiment_arm_runs_as_before(name):
    exp = read_experiment(name)
    for scale in exp.scales:
        for arm, r in arm_recipes(exp, scale).items(): _compare(f"experiment {name} {scale} {arm}", settings(r))
