"""The `resume_check` fixture of the pytest plugin, in a real pytest run: a training test passes with
ipyrepro's checkpoints and fails, with the report, when its checkpoint code forgets the RNG."""

from __future__ import annotations

import pytest

TESTS = """
from tests.resume import training


def test_resumes(resume_check):
    report = resume_check(training.build, training.step, steps=8, at=5)
    assert report.identical


def test_own_checkpoint_code(resume_check):
    resume_check(
        training.build, training.step, steps=8, at=5,
        save=training.save_model_and_optimizer, load=training.load_model_and_optimizer,
    )
"""


def test_resume_check_passes_a_good_resume_and_fails_a_bad_one_with_the_report(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_training=TESTS)
    result = pytester.runpytest("-p", "no:randomly", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*Resume differs: the resumed run diverges from step 6*",
            "*torch CPU RNG not restored*differs from step 6*",
        ]
    )
